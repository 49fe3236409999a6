"""One folder-processing layer for the plugin's image tools (``scripts/lmar_infer.py``, ``car_rescale.py``,
``hcd_refine.py`` and any later one), so that they take the same flags and treat bad input the same way.

    add_folder_arguments(parser, 'folder of HR images', 'folder for the LR PNGs')   # -i/-o, --skip-bad, ...
    run = FolderRun('car_rescale', args.input, skip_bad=args.skip_bad, overwrite=args.overwrite,
                    bit_depth=args.bit_depth)
    rule = SizeRule(8, 'CAR x4', policy=args.size_policy, flag='--size-policy')   # basicsr_lmar.data.size_rules
    jobs = run.plan({'lr': (args.output, '{stem}.png')}, size_rule=rule)
    run.prepare_outputs()                       # created and probed for writing; nothing computed yet
    for job in run.progress(jobs):
        rgb = run.read(job)                     # None when --skip-bad skipped it
        ...
        run.write(job, 'lr', lr)                # the input's bit depth unless told (--bit-depth)
    print(run.summary())

What the layer guarantees, before the first image is computed (:meth:`FolderRun.plan`,
:meth:`FolderRun.prepare_outputs`):

- the input folder exists and holds images (one line otherwise); every image's header is read and its
  size checked against the tool's :class:`~basicsr_lmar.data.size_rules.SizeRule` (or any object with
  ``problem(size)`` and ``notice(size)``); unreadable or unusable images stop the run, all named in one message, or with
  ``--skip-bad`` are listed and left out;
- two inputs that would write the same output, an output that would overwrite an input, and an output
  folder that is the input folder are refused;
- images whose outputs all exist are skipped (``--overwrite`` recomputes them), and the run says how
  many and why;
- every output folder is created and probed with a temporary file ("cannot write to DIR: permission
  denied"; ``-o afile/out`` names ``afile`` as a file).

While running, outputs are written atomically (:func:`~basicsr_lmar.data.image_files.write_image_file`)
and a file that passed the header check but does not decode is named (or skipped with ``--skip-bad``).
If the run ends with an error, output folders it created and left empty are removed.
"""
import errno
import os
import os.path as osp
import sys
import tempfile
import warnings
from dataclasses import dataclass, field

from basicsr_lmar.data.image_files import (OUTPUT_BIT_DEPTHS, ImageFileError, ImageFileWarning, list_images,
                                           probe_image_size, read_image_file, write_image_file)
from basicsr_lmar.data.size_rules import SIZE_POLICIES, format_size
from basicsr_lmar.errors import UserError

LISTED = 8  # names shown in one message before "... and N more"


def listing(lines, limit=LISTED):
    """Indented lines, the first ``limit`` of them, then how many more."""
    lines = list(lines)
    shown = [f'  {line}' for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f'  ... and {len(lines) - limit} more')
    return '\n'.join(shown)


def add_folder_arguments(parser, input_help, output_help, input_aliases=(), output_aliases=(), required=True):
    """The flags every folder tool shares: ``-i/--input``, ``-o/--output`` (plus the tool's older names as
    aliases), ``--skip-bad``, ``--overwrite``, ``--bit-depth`` and ``--debug``."""
    from basicsr_lmar.cli.errors import add_debug_argument

    parser.add_argument('-i', '--input', *input_aliases, dest='input', required=required, metavar='DIR',
                        help=input_help)
    parser.add_argument('-o', '--output', *output_aliases, dest='output', required=required, metavar='DIR',
                        help=output_help)
    parser.add_argument('--skip-bad', action='store_true',
                        help='leave unreadable or unusable images out, listing them (default: name them and stop '
                        'before computing anything)')
    parser.add_argument('--overwrite', action='store_true',
                        help='recompute images whose outputs already exist (default: skip them)')
    parser.add_argument('--bit-depth', type=int, choices=OUTPUT_BIT_DEPTHS,
                        help='bit depth of the output images (default: that of each input)')
    add_debug_argument(parser)


def add_size_policy_argument(parser, requirement, default='crop'):
    """``--size-policy refuse|crop|pad`` for an image whose size is not a multiple of ``requirement``."""
    parser.add_argument('--size-policy', choices=SIZE_POLICIES, default=default,
                        help=f'an image whose height or width is not a multiple of {requirement}: refuse it, crop '
                        'it at the bottom/right, or pad it there (reflection) and crop the outputs back to its size; '
                        f'each crop or pad is listed before computing (default: {default})')


@dataclass
class ImageJob:
    """One input image, its size from the header, and the output paths by kind (``{'lr': ..., 'sr': ...}``)."""
    path: str
    size: tuple
    targets: dict = field(default_factory=dict)
    bit_depth: int = None  # known once read

    @property
    def name(self):
        return osp.basename(self.path)

    @property
    def stem(self):
        return osp.splitext(self.name)[0]


class FolderRun:
    """Processes the images of one input folder; see the module docstring for the guarantees.

    Args:
        tool: the tool's name, for messages.
        input_folder: the folder of images.
        input_flag: the flag that named it (``'-i/--input'``, ``'--lr'``).
        skip_bad, overwrite, bit_depth: the shared flags (:func:`add_folder_arguments`).
        log: where notices go (default: stderr, above the progress bar).
    """

    def __init__(self, tool, input_folder, input_flag='-i/--input', skip_bad=False, overwrite=False,
                 bit_depth=None, log=None):
        self.tool = tool
        self.input_folder = input_folder
        self.input_flag = input_flag
        self.skip_bad = skip_bad
        self.overwrite = overwrite
        self.bit_depth = bit_depth
        self._log = log
        self.outputs = {}  # kind -> (folder, flag)
        self.skipped_existing = []
        self.bad = []  # (name, reason) left out with --skip-bad
        self.written = []
        self.completed = {}  # path -> job of the inputs with an output written
        self._created = []
        self._noted_depths = set()

    # ------------------------------------------------------------------ messages
    def log(self, message):
        if self._log is not None:
            self._log(message)
            return
        from tqdm import tqdm
        tqdm.write(message, file=sys.stderr)

    def _refuse_bad(self, bad, what):
        raise UserError(f'{what} in {self.input_folder} ({self.input_flag}):\n' +
                        listing(f'{name}: {reason}' for name, reason in bad) +
                        '\nFix or remove them, or pass --skip-bad to leave them out.')

    # ------------------------------------------------------------------ before computing
    def plan(self, outputs, size_rule=None):
        """The images to compute, after every check that needs no network (module docstring).

        ``outputs`` maps an output kind to ``(folder, pattern)`` or ``(folder, pattern, flag)``; the
        pattern is formatted with ``stem`` (``'{stem}.png'``, ``'{stem}_SR.png'``); a None folder means
        the kind is not written. ``size_rule``: an object with ``problem(size)`` and ``notice(size)``.
        """
        outputs = {kind: spec for kind, spec in outputs.items() if spec[0] is not None}
        self.outputs = {kind: (spec[0], spec[2] if len(spec) > 2 else '-o/--output') for kind, spec in outputs.items()}
        input_real = osp.realpath(self.input_folder)
        for folder, flag in self.outputs.values():
            if osp.realpath(folder) == input_real:
                raise UserError(f'{flag} {folder} is the input folder ({self.input_flag}); its outputs would be '
                                'read as inputs by the next run. Choose another output folder.')
        paths = list_images(self.input_folder, what=f'{self.input_flag}: input folder')
        jobs, bad, claimed = [], [], {}
        for path in paths:
            name = osp.basename(path)
            try:
                size = probe_image_size(path)
            except ImageFileError as error:
                bad.append((name, str(error).replace(f'{path}: ', '')))
                continue
            stem = osp.splitext(name)[0]
            job = ImageJob(path, size, {kind: osp.join(folder, pattern.format(stem=stem))
                                        for kind, (folder, pattern, *_) in outputs.items()})
            for target in job.targets.values():
                key = osp.realpath(target)
                if key == osp.realpath(path):
                    raise UserError(f'{name}: its output {target} would overwrite the input; choose another '
                                    'output folder')
                if key in claimed:
                    raise UserError(f'{claimed[key]} and {name} would both be written to {target}; rename one '
                                    'of them')
                claimed[key] = name
            if not self.overwrite and all(osp.exists(target) for target in job.targets.values()):
                self.skipped_existing.append(job)
                continue
            problem = size_rule.problem(size) if size_rule is not None else None
            if problem:
                bad.append((name, problem))
                continue
            jobs.append(job)
        if bad and not self.skip_bad:
            self._refuse_bad(bad, f'{len(bad)} of {len(paths)} images cannot be processed')
        for name, reason in bad:
            self.bad.append((name, reason))
        if bad:
            self.log(f'{self.tool}: leaving out {len(bad)} image(s) (--skip-bad):\n' +
                     listing(f'{name}: {reason}' for name, reason in bad))
        if self.skipped_existing:
            self.log(f'{self.tool}: skipping {len(self.skipped_existing)} image(s) whose outputs exist in '
                     f'{self._output_folders()} (--overwrite recomputes them)')
        if size_rule is not None:
            changed = [(job.name, size_rule.notice(job.size)) for job in jobs]
            changed = [(name, notice) for name, notice in changed if notice]
            if changed:
                describe = getattr(size_rule, 'describe', lambda: 'changed')()
                self.log(f'{self.tool}: {len(changed)} image(s) {describe}:\n' +
                         listing(f'{name}: {notice}' for name, notice in changed))
        return jobs

    def _output_folders(self):
        return ' and '.join(dict.fromkeys(folder for folder, _ in self.outputs.values()))

    def prepare_outputs(self):
        """Creates every output folder and probes it with a temporary file; errors name the folder."""
        for folder, flag in dict.fromkeys(self.outputs.values()):
            self._created.extend(prepare_output_folder(folder, flag))

    # ------------------------------------------------------------------ computing
    def progress(self, jobs, desc=None):
        from tqdm import tqdm
        return tqdm(jobs, desc=desc or self.tool, unit='image', disable=not jobs)

    def read(self, job):
        """``rgb`` float32 (H, W, 3) in [0, 1] of ``job`` (its ``bit_depth`` set); None when the file
        does not decode and ``--skip-bad`` is on. Conversion warnings (alpha dropped) are logged."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', ImageFileWarning)
            try:
                rgb, job.bit_depth = read_image_file(job.path)
            except ImageFileError as error:
                if not self.skip_bad:
                    raise ImageFileError(f'{error}; pass --skip-bad to leave unreadable images out') from None
                self.log(f'{self.tool}: leaving out {job.name} (--skip-bad): {error}')
                self.bad.append((job.name, str(error)))
                return None
        for warning in caught:
            if issubclass(warning.category, ImageFileWarning):
                self.log(f'{self.tool}: warning: {warning.message}')
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        if tuple(rgb.shape[:2]) != tuple(job.size):  # the header lied; the size checks were made on it
            raise ImageFileError(f'{job.path}: decodes to {format_size(rgb.shape[:2])} pixels but its header says '
                                 f'{format_size(job.size)}; re-save the file')
        return rgb

    def read_tensor(self, job, device='cpu'):
        """:meth:`read` as a contiguous (1, 3, H, W) float tensor on ``device`` (basicsr's ``img2tensor``)."""
        from basicsr.utils import img2tensor

        rgb = self.read(job)
        if rgb is None:
            return None
        return img2tensor(rgb, bgr2rgb=False, float32=True)[None].contiguous().to(device)

    def write(self, job, kind, image, fixed_bit_depth=None):
        """Writes ``image`` (a (1, 3, H, W) or (3, H, W) tensor, or (H, W, 3) array, in [0, 1]) to the
        ``kind`` target of ``job``, atomically, at ``--bit-depth``, else the input's depth
        (``job.bit_depth``). ``fixed_bit_depth``: the method fixes it (CAR's and HCD's LR are 8-bit);
        the first input of another depth says so in the log."""
        if hasattr(image, 'detach'):
            image = image.detach()
            image = image[0] if image.dim() == 4 else image
            image = image.permute(1, 2, 0).float().cpu().numpy()
        depth = fixed_bit_depth or self.bit_depth or job.bit_depth or 8
        if fixed_bit_depth and job.bit_depth not in (None, fixed_bit_depth) and kind not in self._noted_depths:
            self._noted_depths.add(kind)
            self.log(f'{self.tool}: {job.name} is {job.bit_depth}-bit; its {kind} output is {fixed_bit_depth}-bit, '
                     'as the method stores it (other outputs keep the input\'s depth)')
        write_image_file(job.targets[kind], image, depth)
        self.written.append(job.targets[kind])
        self.completed.setdefault(job.path, job)

    # ------------------------------------------------------------------ after
    def summary(self):
        """One line: how many images were computed and written where, how many were skipped and why."""
        line = f'{self.tool}: {len(self.completed)} image(s) computed'
        if self.completed:
            line += f', written to {self._output_folders()}'
        notes = []
        if self.skipped_existing:
            notes.append(f'{len(self.skipped_existing)} skipped, outputs already there (--overwrite recomputes them)')
        if self.bad:
            notes.append(f'{len(self.bad)} left out as unreadable or unusable (--skip-bad)')
        return line + ('; ' + '; '.join(notes) if notes else '')

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None:
            for folder in reversed(self._created):  # created by this run and left empty: remove
                try:
                    os.rmdir(folder)
                except OSError:
                    pass
        return False


def prepare_output_folder(folder, flag='-o/--output'):
    """Creates ``folder`` (and missing parents) and checks that a file can be written in it.

    Returns the folders created (deepest last). A path through a file (``-o afile/out``), a folder that
    cannot be created or written ("cannot write to DIR: permission denied") is a :class:`UserError`
    naming ``flag``.
    """
    folder = osp.normpath(folder)
    ancestor = folder
    missing = []
    while not osp.exists(ancestor):
        missing.append(ancestor)
        parent = osp.dirname(ancestor) or '.'
        if parent == ancestor:
            break
        ancestor = parent
    if osp.exists(ancestor) and not osp.isdir(ancestor):
        if ancestor == folder:
            raise UserError(f'{flag} {folder} is a file, not a folder; choose a folder for the outputs')
        raise UserError(f'{flag} {folder}: cannot create it, {ancestor} is a file, not a folder')
    created = []
    try:
        for path in reversed(missing):
            failed = f'{flag} {folder}: cannot write to {osp.dirname(path) or "."}'
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            created.append(path)
        failed = f'{flag}: cannot write to {folder}'
        handle, probe = tempfile.mkstemp(prefix='.write-probe-', dir=folder)
    except OSError as error:
        for made in reversed(created):
            os.rmdir(made)
        raise UserError(f'{failed}: {_reason(error)}') from None
    os.close(handle)
    os.remove(probe)
    return created


def _reason(error):
    if isinstance(error, PermissionError):
        return os.strerror(errno.EACCES).lower()
    return (error.strerror or str(error)).lower()
