"""Counts, per torchrun rank, the file-system writes a run makes under a folder (imported at interpreter
start when this directory is on PYTHONPATH; see ``run_helpers.run_training(audit_writes=...)``).

Python's audit events see every write that goes through Python: ``open`` for writing, ``os.mkdir``
(basicsr's ``imwrite`` calls ``os.makedirs`` before OpenCV writes the file), ``os.rename``/``os.replace``
(the plugin's checkpoints are renamed into place from a temporary file) and ``shutil.copyfile`` (the
copy of the option file). Each one under ``BASICSR_LMAR_AUDIT_ROOT`` is appended to
``BASICSR_LMAR_AUDIT_DIR/rank<RANK>.txt``.
"""
import os
import sys

_ROOT = os.environ.get('BASICSR_LMAR_AUDIT_ROOT')
_RANK = os.environ.get('RANK')

if _ROOT and _RANK is not None:
    _ROOT = os.path.realpath(_ROOT)
    _LOG = os.open(os.path.join(os.environ['BASICSR_LMAR_AUDIT_DIR'], f'rank{_RANK}.txt'),
                   os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _under_root(path):
        if isinstance(path, int):
            return None
        path = os.path.realpath(os.fsdecode(path))
        return path if path == _ROOT or path.startswith(_ROOT + os.sep) else None

    def _written(event, args):
        if event == 'open':
            path, mode, flags = args
            writing = any(c in mode for c in 'wax+') if mode else bool((flags or 0) & _WRITE_FLAGS)
            return path if writing else None
        if event in ('os.mkdir', 'os.remove', 'os.rmdir', 'os.truncate'):
            return args[0]
        if event in ('os.rename', 'shutil.copyfile', 'os.symlink', 'os.link'):
            return args[1]
        return None

    def _audit(event, args):
        path = _written(event, args)
        if path is not None:
            path = _under_root(path)
            if path is not None:
                os.write(_LOG, f'{event} {path}\n'.encode())

    sys.addaudithook(_audit)
