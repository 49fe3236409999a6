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
"""
import os
import re
import subprocess

import pytest
import torch

triton = pytest.importorskip('triton')
if os.environ.get('TRITON_INTERPRET') == '1':
    pytest.skip('TRITON_INTERPRET=1 replaces the kernels by interpreted functions', allow_module_level=True)

from triton import knobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import create_function_from_signature  # noqa: E402

from basicsr_lmar.ops import _adaptive_resample_triton as fused  # noqa: E402

ARCHS = (80, 90)  # A100 (Ampere) and H100 / H200 (Hopper)
SPEC_TARGET = GPUTarget('cuda', 90, 32)


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


def _source(launch, target):
    """What ``kernel[grid](...)`` compiles for this launch on ``target``: Triton's binder and argument
    packing (the JIT's own code path), without a device."""
    kernel = launch.kernel
    backend = make_backend(target)
    kwargs = dict(launch.args, **launch.constexprs, num_warps=fused.NUM_WARPS,
                  debug=kernel.debug or knobs.runtime.debug,
                  instrumentation_mode=knobs.compilation.instrumentation_mode)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(**kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    return ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs), options


def _variant(launch):
    source, options = _source(launch, SPEC_TARGET)
    return (launch.kernel.__name__, tuple(source.signature.items()), tuple(sorted(source.constants.items())),
            tuple(sorted((k, tuple(map(tuple, v))) for k, v in source.attrs.items())), options.num_warps)


def _enumerate_variants():
    variants = {}
    for dtype in fused.SUPPORTED_DTYPES:
        for channels in range(1, 2 * fused.MAX_BLOCK_C + 2):  # every channel-group size, and several groups
            img, maps = _maps(1, channels, 4, 4, 2, dtype)
            for launch in _launches(img, maps, 2):
                variants.setdefault(_variant(launch), launch)
    return variants


VARIANTS = _enumerate_variants()


def _label(key):
    name, signature, constants = key[0], dict(key[1]), dict(key[2])
    names = list(signature)
    flags = ','.join(f'{names[path[0]]}={value}' for path, value in constants.items())
    return f'{name.strip("_")}-{signature["img_ptr"].lstrip("*")}-{flags}'


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
        assert _variant(launch) in VARIANTS, _label(_variant(launch))


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
    """REG, STACK, LOCAL and SHARED of the cubin's kernel, read with the cuobjdump that Triton ships."""
    path = tmp_path / 'kernel.cubin'
    path.write_bytes(cubin)
    tool = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'cuobjdump')
    if not os.access(tool, os.X_OK):
        return None
    report = subprocess.run([tool, '--dump-resource-usage', str(path)], capture_output=True, text=True,
                            check=True).stdout
    return {key: int(value) for key, value in re.findall(r'\b(REG|STACK|LOCAL|SHARED):(\d+)', report)}


@pytest.mark.parametrize('arch', ARCHS, ids=lambda a: f'sm_{a}')
@pytest.mark.parametrize('key', list(VARIANTS), ids=_label)
def test_kernel_compiles_for_gpu(key, arch, fresh_triton_cache, tmp_path):
    launch = VARIANTS[key]
    target = GPUTarget('cuda', arch, 32)
    source, options = _source(launch, target)
    compiled = triton.compile(source, target=target, options=options.__dict__)
    assert re.search(rf'^\.target sm_{arch}a?\b', compiled.asm['ptx'], re.MULTILINE)
    assert compiled.asm['cubin'] and compiled.metadata.name == launch.kernel.__name__
    assert compiled.metadata.num_warps == fused.NUM_WARPS
    usage = _resource_usage(compiled.asm['cubin'], tmp_path)
    if usage is not None:  # no register spills (local memory), within the register file and shared memory
        assert usage['LOCAL'] == 0 and usage['STACK'] == 0, usage
        assert usage['REG'] <= 255 and usage['SHARED'] <= 48 * 1024, usage
