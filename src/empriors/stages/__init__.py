"""One module per workflow stage: ``python -m empriors STAGE`` (empriors.cli parses the
arguments) calls ``cmd_STAGE(args)`` of the module named for it here.

==========================  ==================================================  ==================
workflow/rules/             commands                                            module
==========================  ==================================================  ==================
corrupt.smk                 corrupt, phantoms                                   corrupt
em.smk                      init-prior                                          init_prior
em.smk                      estep                                               estep
em.smk                      mstep, final-prior                                  mstep
evaluate.smk                eval-reference, evaluate, aggregate (manifold)      evaluate
evaluate.smk                sample-prior, evaluate-images, aggregate-images,    evaluate_images
                            posterior-examples
evaluate.smk                reconstruct (MRI)                                   reconstruct
diagnostics.smk             diagnose, diagnostics, stop-check, final            diagnostics
diagnostics.smk             lineage (and ``diff``, by hand)                     lineage
studies.smk                 heuristics-part, heuristics-aggregate,              studies
                            benchmark-task, benchmark-table
compare.smk                 compare, claims                                     compare
snapshot.smk                (dvc add: no Python stage)                          -
(by hand, tests)            parity                                              parity
==========================  ==================================================  ==================

Shared by all: :mod:`.common` (settings from the arguments, seeds, provenance, resume files)
and :mod:`.artifacts` (observations, priors, samples, tables).
"""
