"""Files written whole or not at all, for every writer of the plugin (checkpoints, training states, images,
results): the content goes to a temporary file beside the target, which is renamed over it only when
complete, so a reader never sees a half-written file and an interrupted or failed write leaves none.

Imports only the standard library, so that every layer can use it.
"""
import os
import os.path as osp
import re

#: the default temporary name, ``<file>.tmp<pid>``: what a killed writer leaves behind
#: (:func:`basicsr_lmar.runtime.resume.remove_partial_saves` clears the run's folders of them)
PARTIAL_FILE = re.compile(r'\.tmp\d+$')


def write_atomically(path, write, temporary=None):
    """Calls ``write(temporary)``, then renames ``temporary`` to ``path``; the temporary file is removed
    whatever happens. ``temporary``: in the target's folder, ``<path>.tmp<pid>`` unless given (a writer that
    picks the format by the extension needs a name that ends with it)."""
    temporary = temporary or f'{path}.tmp{os.getpid()}'
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if osp.exists(temporary):
            os.remove(temporary)
