"""A reviewer's package: a run as an RO-Crate (Process Run Crate profile) with a signed
in-toto attestation, written by ``precip-repro export`` and read back by ``import``.

::

    ro-crate-metadata.json       the crate: root dataset, the script as the instrument, one
                                 CreateAction per command and transfer, the instances
    run/events.jsonl             the run, as the store holds it: the hash-chained log,
    run/checkpoint(.sig)         its signed checkpoint
    run/objects/ab/cdef…         and its blobs (withheld ones stay withheld: not there)
    experiment/SCRIPT.py, …      the script and its modules, readable (also in run/objects)
    report.html                  the HTML report
    attestation.intoto.jsonl     a DSSE envelope holding an in-toto Statement v1 (SLSA
                                 Provenance v1) whose subjects are every other file

:mod:`~precip_repro.package.layout` names the files, :mod:`~.crate` writes the metadata,
:mod:`~.attestation` the statement, :mod:`~.dsse` signs and checks the envelope,
:mod:`~.archive` writes the deterministic zip, :mod:`~.exporting` and :mod:`~.importing`
put it together.
"""
