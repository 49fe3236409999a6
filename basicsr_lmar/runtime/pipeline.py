"""What the plugin's entries (``basicsr_lmar/train.py``, ``test.py``, console scripts) change in
basicsr's pipeline before running it.

- distributed initialisation through :func:`basicsr_lmar.runtime.dist.init_dist` (gloo on CPU, NCCL on
  GPU, ``dist_params.backend`` overrides; basicsr 1.4.2 passes ``dist_params`` only to slurm, so the
  backend is read from the option file here, with :func:`basicsr_lmar.options.read_option_file`);
- exact, CPU-capable resume and whole batches in every epoch, so that the run reaches
  ``train.total_iter`` (:mod:`basicsr_lmar.runtime.resume`).

The stock ``python -m basicsr.train`` route is left as basicsr ships it, plus the plugin's registration
and the crash repairs of :mod:`basicsr_lmar.runtime.compat`: single-process training and resume work
there; use the plugin's entry for torchrun/gloo, for exact resume and for exact iteration counts.
"""
from basicsr_lmar.options import option_file_argument, read_option_file
from basicsr_lmar.runtime import resume
from basicsr_lmar.runtime.dist import init_dist


def install(argv=None):
    """Patches basicsr's pipeline modules for this process (idempotent)."""
    import basicsr.test as test_module
    import basicsr.train as train_module
    import basicsr.utils.options as options_module

    def init_dist_with_backend(launcher, **kwargs):  # called by parse_options, after the preflight read the file
        opt = read_option_file(option_file_argument(argv))
        kwargs.setdefault('backend', (opt.get('dist_params') or {}).get('backend'))
        init_dist(launcher, **kwargs)

    options_module.init_dist = init_dist_with_backend
    train_module.EnlargedSampler = resume.ResumableEnlargedSampler
    if not getattr(train_module.create_train_val_dataloader, 'installed_by_basicsr_lmar', False):
        create_loaders = train_module.create_train_val_dataloader
        run = {}  # this run's resume state, from load_resume_state to the sampler

        def load_resume_state(opt):
            run['resume_state'] = resume.load_resume_state(opt)
            return run['resume_state']

        def create_train_val_dataloader(opt, logger):
            result = create_loaders(opt, logger)
            train_loader, train_sampler = result[0], result[1]
            # whole batches only: every epoch has the iterations basicsr logs, the run ends at total_iter
            train_sampler.fill_last_batch(train_loader.batch_size)
            resume.skip_consumed_samples(run.get('resume_state'), train_loader, train_sampler)
            return result

        create_train_val_dataloader.installed_by_basicsr_lmar = True
        train_module.load_resume_state = load_resume_state
        train_module.create_train_val_dataloader = create_train_val_dataloader
    return train_module, test_module
