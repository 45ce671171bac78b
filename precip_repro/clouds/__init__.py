"""The clouds: the interface every cloud implements (``base``), and the clouds."""
