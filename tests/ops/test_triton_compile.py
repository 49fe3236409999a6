"""The fused CAR kernels compile ahead of time for real GPUs (sm_80, sm_90), on a machine without one.

``TRITON_INTERPRET=1`` (``test_adaptive_resample.py``) checks the kernels' arithmetic, but the interpreter
runs programs that the compiler rejects (types it cannot lower, layouts, shared-memory limits). Here
every variant the launcher can launch is compiled to PTX and a cubin, as Triton's JIT would compile it
on a GPU: the launches come from the launcher's own plan functions (``forward_launch`` /
``backward_launch``, which the autograd function calls), and their signatures, constexprs and
specialisation attributes from Triton's own binder for those arguments. The set of variants is
enumerated over the element types the launcher accepts and channel counts past its largest channel
group; another test checks that other sizes, scales, batches and misaligned views add no variant, so the
enumerated set is all there is.

Triton's ahead-of-time API differs between releases: both the one of the pinned stack's Triton 3 (with
``triton.knobs``) and the one of the floor stack's Triton 2.1 (torch 2.1) are driven here; any other
release skips, naming itself.
"""
import os
import re
import subprocess
import tempfile

import pytest
import torch

triton = pytest.importorskip('triton')
if os.environ.get('TRITON_INTERPRET') == '1':
    pytest.skip('TRITON_INTERPRET=1 replaces the kernels by interpreted functions', allow_module_level=True)

from basicsr_lmar.ops import _adaptive_resample_triton as fused  # noqa: E402

ARCHS = (80, 90)  # A100 (Ampere) and H100 / H200 (Hopper)


class Compiled:
    """What a compile gave, whichever Triton: PTX, cubin, the kernel's name, warps and shared memory."""

    def __init__(self, ptx, cubin, name, num_warps, shared):
        self.ptx, self.cubin, self.name, self.num_warps, self.shared = ptx, cubin, name, num_warps, shared


class Triton3:
    """Triton 3 (``triton.knobs``): the JIT's binder (``create_function_from_signature``) and argument
    packing give the ``ASTSource`` that ``kernel[grid](...)`` compiles for a ``GPUTarget``."""

    def __init__(self):
        from triton import knobs
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource, make_backend
        from triton.runtime.jit import create_function_from_signature
        self.knobs, self.GPUTarget, self.ASTSource, self.make_backend = knobs, GPUTarget, ASTSource, make_backend
        self.create_function_from_signature = create_function_from_signature

    def _source(self, launch, arch):
        kernel = launch.kernel
        backend = self.make_backend(self.GPUTarget('cuda', arch, 32))
        kwargs = dict(launch.args, **launch.constexprs, num_warps=fused.NUM_WARPS,
                      debug=kernel.debug or self.knobs.runtime.debug,
                      instrumentation_mode=self.knobs.compilation.instrumentation_mode)
        binder = self.create_function_from_signature(kernel.signature, kernel.params, backend)
        bound, specialization, options = binder(**kwargs)
        options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
        return self.ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs), options

    def variant(self, launch):
        source, options = self._source(launch, 90)
        return (launch.kernel.__name__, tuple(source.signature.items()), tuple(sorted(source.constants.items())),
                tuple(sorted((k, tuple(map(tuple, v))) for k, v in source.attrs.items())), options.num_warps)

    def label(self, key):
        name, signature, constants = key[0], dict(key[1]), dict(key[2])
        names = list(signature)
        flags = ','.join(f'{names[path[0]]}={value}' for path, value in constants.items())
        return f'{name.strip("_")}-{signature["img_ptr"].lstrip("*")}-{flags}'

    def compile(self, launch, arch, monkeypatch):
        source, options = self._source(launch, arch)
        compiled = triton.compile(source, target=self.GPUTarget('cuda', arch, 32), options=options.__dict__)
        metadata = compiled.metadata
        return Compiled(compiled.asm['ptx'], compiled.asm['cubin'], metadata.name, metadata.num_warps, metadata.shared)


class Triton2:
    """Triton 2 (2.1 with torch 2.1): the JIT's own launcher, called with ``warmup=True`` on a named CUDA
    device, works out the signature, constants and specialisation; its cache hook receives them instead of
    compiling, and ``triton.compile`` then compiles them for ``cc``. ``triton.compile`` also builds the
    host-side launcher stub, which links the CUDA driver (absent without a GPU): that stub is replaced by
    one that refuses to launch; the device code (PTX, cubin) is Triton's own."""

    def __init__(self):
        from triton.compiler import compiler
        from triton.runtime.jit import JITFunction
        self.compiler, self.JITFunction = compiler, JITFunction

    def _compile_arguments(self, launch):
        captured = {}

        def hook(**kwargs):
            captured.update(kwargs['compile'])
            return True  # compiled elsewhere

        self.JITFunction.cache_hook = hook
        try:
            launch.kernel[launch.grid](**launch.args, **launch.constexprs, num_warps=fused.NUM_WARPS, warmup=True,
                                       device=0, device_type='cuda')
        finally:
            self.JITFunction.cache_hook = None
        return captured

    def variant(self, launch):
        found = self._compile_arguments(launch)
        config = found['configs'][0]
        return (launch.kernel.__name__, tuple(found['signature'].items()), tuple(sorted(found['constants'].items())),
                (tuple(config.divisible_by_16), tuple(config.equal_to_1)), found['num_warps'])

    def label(self, key):
        name, signature, constants = key[0], dict(key[1]), dict(key[2])
        names = fused._car_forward_kernel.arg_names if 'forward' in name else fused._car_backward_kernel.arg_names
        flags = ','.join(f'{names[index]}={value}' for index, value in constants.items())
        return f'{name.strip("_")}-{signature[0].lstrip("*")}-{flags}'

    def compile(self, launch, arch, monkeypatch):
        def launcher_stub(name, signature, constants):
            path = os.path.join(tempfile.mkdtemp(), f'{name}_launcher.py')
            with open(path, 'w') as handle:
                handle.write('def launch(*args):\n    raise RuntimeError("compiled ahead of time: no launcher")\n')
            return path

        monkeypatch.setattr(self.compiler, 'make_stub', launcher_stub)
        found = self._compile_arguments(launch)
        compiled = triton.compile(launch.kernel, signature=found['signature'], constants=found['constants'],
                                  configs=found['configs'], num_warps=found['num_warps'],
                                  num_stages=found['num_stages'], cc=arch, device_type='cuda')
        metadata = compiled.metadata
        return Compiled(compiled.asm['ptx'], compiled.asm['cubin'], metadata['name'], metadata['num_warps'],
                        metadata['shared'])


def _ahead_of_time_api():
    if hasattr(triton, 'knobs'):
        return Triton3()
    compiler = getattr(triton.compiler, 'compiler', None)  # Triton 2.0's triton.compiler is a module
    if hasattr(compiler, 'instance_descriptor') and hasattr(compiler, 'make_stub'):
        return Triton2()
    pytest.skip(f'Triton {triton.__version__}: neither the ahead-of-time API of Triton 2.1 nor that of Triton 3 '
                'with triton.knobs, the two these tests drive', allow_module_level=True)


API = _ahead_of_time_api()


def _maps(batch, channels, out_h, out_w, scale, dtype):
    k2 = (3 * scale + 1)**2
    img = torch.rand(batch, channels, out_h * scale, out_w * scale).to(dtype)
    maps = [torch.rand(batch, k2, out_h, out_w).to(dtype) for _ in range(3)]
    return img, maps


def _launches(img, maps, scale):
    """The forward launch and both backward launches (with and without the image gradient)."""
    out = img.new_empty(img.shape[0], img.shape[1], *maps[0].shape[-2:])
    grad_img = torch.zeros(img.shape)
    grad_maps = [torch.zeros(maps[0].shape) for _ in range(3)]
    return [fused.forward_launch(img, *maps, scale, out)] + [
        fused.backward_launch(img, *maps, scale, out, grad_img, grad_maps, need) for need in (True, False)]


def _enumerate_variants():
    variants = {}
    for dtype in fused.SUPPORTED_DTYPES:
        for channels in range(1, 2 * fused.MAX_BLOCK_C + 2):  # every channel-group size, and several groups
            img, maps = _maps(1, channels, 4, 4, 2, dtype)
            for launch in _launches(img, maps, 2):
                variants.setdefault(API.variant(launch), launch)
    return variants


VARIANTS = _enumerate_variants()


def test_variants_cover_the_launcher():
    """3 element types x the channel-group sizes 1, 2, 4; the backward also with and without the image
    gradient: 9 forward and 18 backward variants."""
    names = [key[0] for key in VARIANTS]
    block_sizes = {fused.launch_config(c)['BLOCK_C'] for c in range(1, 2 * fused.MAX_BLOCK_C + 2)}
    assert block_sizes == {1, 2, 4}
    assert names.count('_car_forward_kernel') == len(fused.SUPPORTED_DTYPES) * len(block_sizes)
    assert names.count('_car_backward_kernel') == 2 * len(fused.SUPPORTED_DTYPES) * len(block_sizes)


@pytest.mark.parametrize('seed', range(6))
def test_other_sizes_and_alignments_add_no_variant(seed):
    """Sizes, scales, batches, channel counts and pointer offsets are runtime arguments the kernels do not
    specialise on: any launch lands in the enumerated set (so the compile tests below cover all of them)."""
    generator = torch.Generator().manual_seed(seed)

    def draw(low, high):
        return int(torch.randint(low, high + 1, (1, ), generator=generator))

    dtype = fused.SUPPORTED_DTYPES[seed % len(fused.SUPPORTED_DTYPES)]
    scale = (2, 4, 3)[seed % 3]
    channels = (1, 3, 16, 37, 2, 64)[seed]
    out_h, out_w, batch = draw(1, 9), draw(1, 9), draw(1, 3)
    img, maps = _maps(batch, channels, out_h, out_w, scale, dtype)
    # a view one element into a larger buffer: misaligned data pointers
    img = torch.cat([img.reshape(-1)[:1], img.reshape(-1)])[1:].view(img.shape)
    assert img.data_ptr() % 16 != 0
    for launch in _launches(img, maps, scale):
        assert API.variant(launch) in VARIANTS, API.label(API.variant(launch))


@pytest.fixture(scope='module')
def fresh_triton_cache(tmp_path_factory):
    """Compile for real: an empty cache, not kernels compiled by an earlier run."""
    previous = os.environ.get('TRITON_CACHE_DIR')
    os.environ['TRITON_CACHE_DIR'] = str(tmp_path_factory.mktemp('triton_cache'))
    yield
    if previous is None:
        os.environ.pop('TRITON_CACHE_DIR')
    else:
        os.environ['TRITON_CACHE_DIR'] = previous


def _resource_usage(cubin, tmp_path):
    """REG, STACK, LOCAL and SHARED of the cubin's kernel, read with the cuobjdump that Triton 3 ships."""
    path = tmp_path / 'kernel.cubin'
    path.write_bytes(cubin)
    tool = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'cuobjdump')
    if not os.access(tool, os.X_OK):
        return None
    report = subprocess.run([tool, '--dump-resource-usage', str(path)], capture_output=True, text=True,
                            check=True).stdout
    return {key: int(value) for key, value in re.findall(r'\b(REG|STACK|LOCAL|SHARED):(\d+)', report)}


@pytest.mark.parametrize('arch', ARCHS, ids=lambda a: f'sm_{a}')
@pytest.mark.parametrize('key', list(VARIANTS), ids=API.label)
def test_kernel_compiles_for_gpu(key, arch, fresh_triton_cache, tmp_path, monkeypatch):
    launch = VARIANTS[key]
    compiled = API.compile(launch, arch, monkeypatch)
    assert re.search(rf'^\.target sm_{arch}a?\b', compiled.ptx, re.MULTILINE)
    # Triton 2 appends the specialised arguments' indices to the name
    assert compiled.cubin and re.fullmatch(rf'{launch.kernel.__name__}(_\d+)?', compiled.name), compiled.name
    assert compiled.num_warps == fused.NUM_WARPS and compiled.shared <= 48 * 1024
    usage = _resource_usage(compiled.cubin, tmp_path)
    if usage is not None:  # no register spills (local memory), within the register file and shared memory
        assert usage['LOCAL'] == 0 and usage['STACK'] == 0, usage
        assert usage['REG'] <= 255 and usage['SHARED'] <= 48 * 1024, usage
