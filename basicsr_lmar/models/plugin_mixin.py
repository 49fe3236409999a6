"""``PluginModelMixin``: what the plugin's models add to basicsr's, composed of small pieces.

Every model of the plugin is the mixin composed with basicsr's own class, mixin first, as Real-ESRGAN's
models extend basicsr's::

    @MODEL_REGISTRY.register()
    class MyModel(PluginModelMixin, SRModel):
        network_sections = {'network_g': Network('the trained network, e.g. {type: EDSR, ...}')}
        declared_options = {'train': {'pixel_opt': Option({'type': 'L1Loss'}, registry=LOSS_REGISTRY)}}

        def training_losses(self, current_iter):
            return self.pixel_losses(self.net_g(self.lq), self.gt)

The pieces, each in its module: :class:`~basicsr_lmar.models.model_options.ModelOptionsMixin` (what a
model declares, validated once), :class:`~basicsr_lmar.models.networks.NetworksMixin` (building,
placement, frozen networks), :class:`~basicsr_lmar.models.training_guards.TrainingGuardsMixin` (set-up,
step, guards, amp, rank-agreeing randomness) and :class:`~basicsr_lmar.models.checkpoint_io.CheckpointIOMixin`
(atomic checkpoints, safe loading, exact-resume states); here the construction and validation images.

basicsr supplies everything else, unchanged: the validation loop, metric bookkeeping and its log
(``SRModel.nondist_validation``, ``_log_validation_metric_values``), visuals, result images,
``get_current_log``, EMA updates (``model_ema``), ``setup_optimizers`` (``optim_g`` for ``net_g``),
schedulers and warm-up, ``save``.

**Construction**, in this order: :meth:`validate_options` (every section, once, before anything is built;
the result is ``self.options``, a frozen yacs ``CfgNode``, and the validated sections, defaults included,
replace the raw ones in ``opt`` for basicsr's own methods); basicsr's ``BaseModel.__init__``; the
preflight's notices logged; the subclass's :meth:`build_networks`; ``init_training_settings()`` when
training.

**A subclass** declares ``network_sections`` and ``declared_options`` (which add up along the class
hierarchy), builds its networks in ``build_networks()`` and gives its losses in ``training_losses()``
(forward passes under ``with self.autocast():``, losses in fp32); it overrides ``validate_options`` for
checks that span sections (``super()`` first), and a rescaling model gives ``test_lr()``, the 8-bit LR
that :meth:`save_lr_images` writes beside basicsr's result image. Every model method that writes files
is ``@master_only``. ``docs/extending.md`` shows it done.
"""
import os.path as osp

from basicsr.models.base_model import BaseModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import master_only

from basicsr_lmar.data.size_rules import NOTICES_KEY
from basicsr_lmar.models.checkpoint_io import CheckpointIOMixin
from basicsr_lmar.models.model_options import ModelOptionsMixin
from basicsr_lmar.models.networks import NetworksMixin
from basicsr_lmar.models.training_guards import TrainingGuardsMixin
from basicsr_lmar.options import to_plain


class NamedImages:
    """A validation loader as basicsr's loop reads it: that loop names each image by ``lq_path``, which
    HR-only datasets (rescaling, LMAR's resampler) do not give; their ``gt_path`` names it then."""

    def __init__(self, loader):
        self.loader, self.dataset = loader, loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if 'lq_path' not in batch and 'gt_path' in batch:
                batch = dict(batch, lq_path=batch['gt_path'])
            yield batch


class PluginModelMixin(ModelOptionsMixin, NetworksMixin, TrainingGuardsMixin, CheckpointIOMixin):
    """The plugin's additions to a basicsr model class (compose it first: ``(PluginModelMixin, SRModel)``)."""

    def __init__(self, opt):
        self.options = self.validate_options(opt)
        for section in self.option_schemas:
            if section in self.options and opt.get(section) is not None:
                opt[section] = to_plain(self.options[section])
        # BaseModel's, not SRModel's __init__: build_networks() does SRModel's work (build, move, print,
        # load path.pretrain_network_g) for every network of the model, in the order the model needs.
        BaseModel.__init__(self, opt)
        self.init_training_guards(self.options.get('train'))
        self.network_options = {}
        for notice in opt.get(NOTICES_KEY) or ():  # the preflight's (images cropped or padded): the log exists now
            get_root_logger().info(notice)
        if self.is_train:
            self.remove_interrupted_saves()
        self.build_networks()
        if self.is_train:
            self.init_training_settings()

    @master_only
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        # basicsr's loop writes the result images only: a rescaling model's product is its LR (test_lr()),
        # written beside them
        self.validate_results(dataloader, current_iter, tb_logger, save_img)
        if save_img and hasattr(self, 'test_lr'):
            self.save_lr_images(dataloader, current_iter)

    def validate_results(self, dataloader, current_iter, tb_logger, save_img):
        """basicsr's validation loop (HR-only datasets name their images by ``gt_path``: :class:`NamedImages`)."""
        super().nondist_validation(NamedImages(dataloader), current_iter, tb_logger, save_img)

    def validation_image_path(self, image_name, current_iter, dataset_name, tag=''):
        """Where basicsr's loop writes the result of ``image_name``, with ``tag`` before the extension."""
        folder = self.opt['path']['visualization']
        if self.opt['is_train']:
            return osp.join(folder, image_name, f'{image_name}_{current_iter}{tag}.png')
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return osp.join(folder, dataset_name, f'{image_name}_{suffix}{tag}.png')

    @master_only
    def save_lr_images(self, dataloader, current_iter):
        """Writes the 8-bit LR (``test_lr()``) of every validation image beside its result image, tagged
        ``_lr``: the LR is what a rescaling method produces, and basicsr's loop writes the result only."""
        dataset_name = dataloader.dataset.opt['name']
        for batch in NamedImages(dataloader):
            self.feed_data(batch)
            image_name = osp.splitext(osp.basename(batch['lq_path'][0]))[0]
            path = self.validation_image_path(image_name, current_iter, dataset_name, '_lr')
            imwrite(tensor2img([self.test_lr()]), path)
            del self.gt
