"""Code the tests share: fake dataset trees, host-filled flax variables, the tiny synthetic worlds
of the shared fixtures, the toy model the engine tests train, Keras weight files, Ctrl-C, and the
scripts the multi-process tests launch.

Imported as `from helpers import fake_trees`: pytest puts tests/ on sys.path (tests/ is not a
package), and `multihost_launch` starts its scripts with tests/ on PYTHONPATH."""
