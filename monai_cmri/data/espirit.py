"""ESPIRiT coil sensitivities in PyTorch, batched over slices (SPEC 1.3 and 6, paper 2.1.2).

The estimate is the one of sigpy's ``sigpy.mri.app.EspiritCalib`` (Uecker et al., MRM 71:990,
2014), with its parameters and conventions: the ``calib x calib`` centre of k-space gives the
calibration (Hankel) matrix of all ``kernel x kernel`` blocks of every coil; its right singular
vectors above ``thresh`` times the largest singular value are the kernels; at every pixel ``r``
the ``C x C`` matrix ``G(r) = (H W / kernel^2) sum_k v_k(r) v_k(r)^H``, with ``v_k`` the
zero-padded inverse FFT of kernel ``k``, has the sensitivities as its leading eigenvector; the
phase is referenced to coil 0 and the maps are set to 0 where the eigenvalue is not above ``crop``.

sigpy sums ``H W`` outer products per kernel and runs 100 power iterations per pixel, tens of
seconds per 16-coil 320 x 320 slice on two cores. Two facts make the same answer much cheaper
(SPEC 6; measurements in docs/performance.md):

* ``G`` is band-limited. Each ``v_k`` is a trigonometric polynomial with ``kernel^2`` frequencies,
  so every entry of ``G`` has frequencies in a ``(2 kernel - 1)^2`` window only. Those Fourier
  coefficients are computed exactly on a ``2 kernel x 2 kernel`` grid (no aliasing), and ``G`` is
  evaluated on the image grid by a separable zero-padded inverse DFT, two small matrix products,
  a block of rows at a time so that memory stays bounded.
* The leading eigenvector needs far fewer than 100 power steps. Chebyshev acceleration damps
  every eigenvalue in ``[0, b]`` uniformly, with ``b = min(trace G - rho, bound * rho)``, ``rho``
  the Rayleigh quotient of the start vector: the sum of the other eigenvalues bounds the second
  one (``G`` is positive semi-definite), so ``b`` adapts to the eigenvalue gap pixel by pixel and
  never sits above ``bound`` (0.9) times the leading eigenvalue. The start vector is the column
  ``j`` of ``G`` with the largest diagonal: its component along the leading eigenvector ``v`` is
  ``lambda_1 conj(v_j)``, large because ``G_jj = sum_i lambda_i |v_ij|^2`` is dominated by
  ``lambda_1`` (sigpy's all-ones start fails where the coil phases cancel). Each pixel stops once its residual is
  below ``tol``; the unfinished ones are gathered into a smaller batch. As in sigpy, the output
  is ``G x / ||G x||`` and the eigenvalue ``||G x||`` for a unit ``x``, which cannot exceed the
  true eigenvalue (up to rounding), so the ``crop`` test never keeps a pixel that the exact
  eigenvalue would remove.

Written here rather than taken from a library because sigpy is NumPy/CuPy only and per slice,
and MONAI has no ESPIRiT; :func:`espirit_combine` keeps sigpy as the reference backend.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.config.type_definitions import NdarrayOrTensor
from monai.utils import convert_to_dst_type, convert_to_tensor

from monai_cmri.transforms import fft2c, ifft2c

__all__ = ["espirit", "espirit_maps", "espirit_combine"]

# Complex entries of G evaluated at once: 16 MB on a CPU, where blocks that stay in the cache
# measured fastest (docs/performance.md); 1 GB on a GPU, to keep it busy.
_BLOCK_CPU = 2**21
_BLOCK_GPU = 2**27


def espirit(
    kspace: NdarrayOrTensor,
    calib: int = 24,
    kernel: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
    iters: int = 32,
    tol: float = 1e-6,
    bound: float = 0.9,
    block: int | None = None,
) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
    """ESPIRiT sensitivity maps and their eigenvalues, batched over slices (SPEC 1.3, 6).

    Args:
        kspace: centred multi-coil k-space, complex ``(..., C, H, W)``; every leading index is one
            slice, computed independently. CPU or CUDA tensor, or NumPy array.
        calib: width of the square calibration region at the k-space centre (sigpy's
            ``calib_width``), in samples.
        kernel: width of the square k-space kernel (sigpy's ``kernel_width``), in samples.
        thresh: singular values of the calibration matrix above ``thresh`` times the largest one
            keep their kernel.
        crop: maps are set to 0 where the leading eigenvalue is not above ``crop``.
        iters: most Chebyshev steps per pixel (sigpy runs 100 plain power steps). Pixels stop
            earlier, once converged: 6 to 10 steps on average on brain-like data.
        tol: a pixel stops once ``||G x - rho x|| <= tol * rho`` (``rho = x^H G x``, unit ``x``);
            1e-6 matches sigpy's maps to float32 precision.
        bound: largest Chebyshev damping interval, as a fraction of the leading eigenvalue, in
            ``(0, 1)``.
        block: complex entries of ``G`` evaluated at once (memory knob); ``None`` picks 2^21 on a
            CPU and 2^27 on a GPU.

    Returns:
        ``(maps, eigenvalues)``: complex64 maps ``(..., C, H, W)``, unit norm over coils where
        kept, phase of coil 0 real and non-negative; float32 leading eigenvalues ``(..., H, W)``.
        Same array type and device as ``kspace``.

    Raises:
        ValueError: if ``kspace`` is not complex ``(..., C, H, W)`` with ``H, W >= calib``, holds
            NaN or infinity, or a parameter is out of range.
    """
    k = _check(kspace, calib, kernel, thresh, crop, iters, tol, bound)
    maps, eig = _espirit(k, calib, kernel, thresh, crop, iters, tol, bound, block)
    return _like(maps, kspace), _like(eig, kspace)


def espirit_maps(
    kspace: NdarrayOrTensor,
    calib: int = 24,
    kernel: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
    iters: int = 32,
    tol: float = 1e-6,
    bound: float = 0.9,
    block: int | None = None,
) -> NdarrayOrTensor:
    """ESPIRiT sensitivity maps, the output of sigpy's ``EspiritCalib(...).run()`` (SPEC 1.3).

    Args:
        kspace: centred multi-coil k-space, complex ``(..., C, H, W)``.
        calib: calibration region width, in samples.
        kernel: kernel width, in samples.
        thresh: relative singular value threshold of the calibration matrix.
        crop: eigenvalue threshold below which maps are 0.
        iters: most Chebyshev steps, see :func:`espirit`.
        tol: convergence tolerance, see :func:`espirit`.
        bound: largest Chebyshev damping interval, see :func:`espirit`.
        block: memory knob, see :func:`espirit`.

    Returns:
        Complex64 maps ``(..., C, H, W)``, same array type and device as ``kspace``.

    Raises:
        ValueError: as :func:`espirit`.
    """
    return espirit(kspace, calib, kernel, thresh, crop, iters, tol, bound, block)[0]


def espirit_combine(
    kspace: NdarrayOrTensor,
    calib: int = 24,
    kernel: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
    iters: int = 32,
    tol: float = 1e-6,
    bound: float = 0.9,
    block: int | None = None,
    backend: str = "torch",
    remove_oversampling: bool = False,
) -> NdarrayOrTensor:
    """Coil-combined complex image ``sum_c conj(S_c) img_c / sum_c |S_c|^2`` (SPEC 1.3).

    ``img_c`` is the centred orthonormal inverse FFT of coil ``c``; the result is 0 where every
    map is 0 (outside the object, after the eigenvalue crop). Its phase is the object's phase
    relative to coil 0, as in the paper (2.1.2).

    With ``remove_oversampling`` the readout oversampling of fastMRI (``H`` twice the field of
    view) is removed first: inverse FFT, keep the ``H // 2`` central rows (rows 160:480 of 640),
    FFT back, then ESPIRiT on the half-size k-space. The calibration then spans twice the k-space
    extent along the readout, but the sensitivities are smooth, so the combined image equals the
    central rows of the full-size result to within noise, at half the cost.

    Args:
        kspace: centred multi-coil k-space, complex ``(..., C, H, W)``.
        calib: calibration region width, in samples.
        kernel: kernel width, in samples.
        thresh: relative singular value threshold of the calibration matrix.
        crop: eigenvalue threshold below which maps are 0.
        iters: most Chebyshev steps of the torch backend, see :func:`espirit`.
        tol: convergence tolerance of the torch backend, see :func:`espirit`.
        bound: largest Chebyshev damping interval of the torch backend, see :func:`espirit`.
        block: memory knob of the torch backend, see :func:`espirit`.
        backend: ``"torch"`` (this module, batched, CPU or CUDA) or ``"sigpy"`` (sigpy's
            ``EspiritCalib`` slice by slice on the CPU with its 100 power steps: the reference,
            tens of seconds per 16-coil 320 x 320 slice on two cores).
        remove_oversampling: crop the readout to ``H // 2`` rows before ESPIRiT.

    Returns:
        Complex64 image ``(..., H, W)``, or ``(..., H // 2, W)`` with ``remove_oversampling``;
        same array type and device as ``kspace``.

    Raises:
        ValueError: if the input or a parameter is invalid (see :func:`espirit`) or ``backend`` is
            unknown.
    """
    if backend not in ("torch", "sigpy"):
        raise ValueError(f"espirit_combine: backend must be 'torch' or 'sigpy', got {backend!r}")
    k = _check(kspace, calib, kernel, thresh, crop, iters, tol, bound)
    images = ifft2c(k)
    if remove_oversampling:
        height = k.shape[-2]
        start = (height - height // 2) // 2
        images = images[..., start : start + height // 2, :]
        if height // 2 < calib:
            raise ValueError(
                f"espirit_combine: {height // 2} rows left after removing the readout oversampling, "
                f"fewer than the {calib} x {calib} calibration region"
            )
        k = fft2c(images)
    if backend == "torch":
        maps = _espirit(k, calib, kernel, thresh, crop, iters, tol, bound, block)[0]
    else:
        maps = _sigpy_maps(k, calib, kernel, thresh, crop)
    return _like(_combine(images, maps), kspace)


def _espirit(
    k: torch.Tensor,
    calib: int,
    kernel: int,
    thresh: float,
    crop: float,
    iters: int,
    tol: float,
    bound: float,
    block: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`espirit` on a checked complex64 tensor ``(..., C, H, W)``."""
    lead, (coils, height, width) = k.shape[:-3], k.shape[-3:]
    k = k.reshape(-1, coils, height, width)
    if block is None:
        block = _BLOCK_GPU if k.is_cuda else _BLOCK_CPU
    coef = _spectrum(_kernels(k, calib, kernel, thresh), kernel)
    maps, eig = _eigen(coef, height, width, iters, bound, tol, block)
    maps = maps * maps[:, :1].conj().sgn()  # sgn(0) = 0: an undefined phase gives a zero map
    maps = maps * (eig > crop).unsqueeze(1)
    return maps.reshape(*lead, coils, height, width), eig.reshape(*lead, height, width)


def _check(
    kspace: NdarrayOrTensor,
    calib: int,
    kernel: int,
    thresh: float,
    crop: float,
    iters: int,
    tol: float,
    bound: float,
) -> torch.Tensor:
    """The k-space as a complex64 tensor, after checking it and the parameters."""
    if not isinstance(kspace, (np.ndarray, torch.Tensor)):
        raise ValueError(f"espirit: expected a numpy array or a torch tensor, got {type(kspace).__name__}")
    k = convert_to_tensor(kspace, track_meta=False)
    if not k.is_complex():
        raise ValueError(f"espirit: expected complex k-space (..., C, H, W), got dtype {k.dtype}")
    if k.ndim < 3 or min(k.shape[-3:]) < 1:
        raise ValueError(f"espirit: expected k-space of shape (..., C, H, W), got {tuple(k.shape)}")
    if not 1 <= kernel <= calib:
        raise ValueError(f"espirit: need 1 <= kernel <= calib, got kernel {kernel} and calib {calib}")
    if min(k.shape[-2:]) < calib:
        size = tuple(k.shape[-2:])
        raise ValueError(f"espirit: image {size} is smaller than the {calib} x {calib} calibration region")
    if not 0.0 <= thresh < 1.0 or not 0.0 <= crop <= 1.0:
        raise ValueError(f"espirit: need 0 <= thresh < 1 and 0 <= crop <= 1, got thresh {thresh} and crop {crop}")
    if iters < 1 or tol < 0.0 or not 0.0 < bound < 1.0:
        raise ValueError(f"espirit: need iters >= 1, tol >= 0 and 0 < bound < 1, got {iters}, {tol} and {bound}")
    k = k.to(torch.complex64)
    if not bool(torch.isfinite(torch.view_as_real(k)).all()):
        raise ValueError(f"espirit: k-space of shape {tuple(k.shape)} holds NaN or infinite values")
    return k


def _kernels(k: torch.Tensor, calib: int, kernel: int, thresh: float) -> torch.Tensor:
    """ESPIRiT kernels, the calibration matrix's leading right singular vectors.

    Args:
        k: complex64 k-space ``(B, C, H, W)``.
        calib: calibration region width.
        kernel: kernel width.
        thresh: relative singular value threshold.

    Returns:
        Complex64 ``(B, K, C, kernel, kernel)``; kernels of one slice below its threshold are 0
        (slices keep different numbers of kernels, ``K`` is the largest).
    """
    batch, coils, height, width = k.shape
    # sigpy's sp.resize centre: the block starts at n // 2 - calib // 2, for odd n too.
    r0, c0 = height // 2 - calib // 2, width // 2 - calib // 2
    region = k[..., r0 : r0 + calib, c0 : c0 + calib]
    blocks = region.unfold(-2, kernel, 1).unfold(-2, kernel, 1)  # (B, C, nb, nb, kernel, kernel)
    rows = (calib - kernel + 1) ** 2
    # Row = block position, column = (coil, ky, kx), as sigpy's array_to_blocks + transpose.
    mat = blocks.reshape(batch, coils, rows, kernel * kernel).transpose(1, 2).reshape(batch, rows, -1)
    _, s, vh = torch.linalg.svd(mat, full_matrices=False)
    keep = s > thresh * s[:, :1]
    count = max(1, int(keep.sum(1).max()))  # one zeroed kernel keeps an all-zero input defined
    vh = vh[:, :count] * keep[:, :count, None]
    return vh.reshape(batch, count, coils, kernel, kernel)


def _spectrum(kernels: torch.Tensor, kernel: int) -> torch.Tensor:
    """Fourier coefficients of ``G`` (SPEC 6), frequencies ``-(kernel-1) .. kernel-1`` per axis.

    ``G`` is sampled on a ``2 kernel`` grid, the smallest even grid on which its
    ``(2 kernel - 1)^2`` frequencies do not alias, and brought back to k-space there. The factor
    ``n / kernel^2`` folds sigpy's ``H W / kernel^2`` with the orthonormal FFT scalings, so that
    :func:`_eigen`'s unnormalised inverse DFT gives sigpy's matrix on any image grid.

    Args:
        kernels: complex64 ``(B, K, C, kernel, kernel)``.
        kernel: kernel width.

    Returns:
        Complex64 ``(B, D, D, C, C)``, ``D = 2 kernel - 1``, entry ``[b, d1, d2, i, j]`` the
        coefficient of ``G_ij`` at frequency ``(d1 - kernel + 1, d2 - kernel + 1)``.
    """
    batch, count, coils = kernels.shape[:3]
    n = 2 * kernel
    start = n // 2 - kernel // 2  # sp.resize's placement, so the frequency offsets match
    padded = kernels.new_zeros(batch, count, coils, n, n)
    padded[..., start : start + kernel, start : start + kernel] = kernels
    v = ifft2c(padded).permute(0, 3, 4, 2, 1)  # (B, n, n, C, K)
    gram = v @ v.conj().transpose(-1, -2)  # (B, n, n, C, C): sum_k v_k v_k^H on the small grid
    coef = fft2c(gram.permute(0, 3, 4, 1, 2)).permute(0, 3, 4, 1, 2)  # back to k-space over (n, n)
    half = kernel - 1
    return coef[:, n // 2 - half : n // 2 + half + 1, n // 2 - half : n // 2 + half + 1] * (n / kernel**2)


def _dft(size: int, half: int, device: torch.device) -> torch.Tensor:
    """Inverse DFT matrix ``(size, 2 half + 1)`` from centred frequencies to a centred grid.

    Entry ``[r, d]`` is ``exp(2 pi i (d - half) (r - size // 2) / size)``; the phase is reduced
    modulo ``size`` in integers, so it is exact for any image size.
    """
    r = torch.arange(size, device=device) - size // 2
    d = torch.arange(-half, half + 1, device=device)
    turns = torch.remainder(torch.outer(r, d), size).to(torch.float64) / size
    return torch.polar(torch.ones_like(turns), 2 * math.pi * turns).to(torch.complex64)


def _eigen(
    coef: torch.Tensor, height: int, width: int, iters: int, bound: float, tol: float, block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading eigenvector and eigenvalue of ``G`` at every pixel, a block of rows at a time.

    Args:
        coef: Fourier coefficients ``(B, D, D, C, C)`` from :func:`_spectrum`.
        height: image rows ``H``.
        width: image columns ``W``.
        iters: most Chebyshev steps.
        bound: largest damping interval relative to the eigenvalue.
        tol: relative residual at which a pixel stops.
        block: complex entries of ``G`` per block.

    Returns:
        Unit eigenvectors ``(B, C, H, W)`` (phase not referenced yet) and float32 eigenvalues
        ``(B, H, W)``.
    """
    batch, size, _, coils, _ = coef.shape
    half = size // 2
    e_h = _dft(height, half, coef.device)
    e_w = _dft(width, half, coef.device)
    # Column transform once for all rows: (B, D, W * C * C), and the same for the diagonal alone,
    # which the start vector and the trace need contiguous (a strided read of it costs a G pass).
    cols = (e_w @ coef.reshape(batch, size, size, coils * coils)).reshape(batch, size, width * coils * coils)
    cols_diag = (e_w @ torch.diagonal(coef, dim1=-2, dim2=-1)).reshape(batch, size, width * coils)
    maps = coef.new_empty(batch, coils, height, width)
    eig = coef.real.new_empty(batch, height, width)
    rows = max(1, min(height, block // (batch * width * coils * coils)))
    # G-sized buffers reused by every block: a fresh allocation of this size is page-faulted in
    # anew each time, which costs as much as the arithmetic.
    g_buf = coef.new_empty(batch * rows * width * coils * coils)
    spare = coef.new_empty(g_buf.numel() // 2 + coils * coils)
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        g = g_buf[: batch * (r1 - r0) * width * coils * coils].view(batch, r1 - r0, width * coils * coils)
        torch.matmul(e_h[r0:r1], cols, out=g)
        diag = (e_h[r0:r1] @ cols_diag).real.reshape(-1, coils)
        x, lam = _chebyshev(g.view(-1, coils, coils), diag, spare, iters, bound, tol)
        maps[:, :, r0:r1] = x.reshape(batch, r1 - r0, width, coils).permute(0, 3, 1, 2)
        eig[:, r0:r1] = lam.reshape(batch, r1 - r0, width)
    return maps, eig


def _chebyshev(
    g: torch.Tensor, diag: torch.Tensor, spare: torch.Tensor, iters: int, bound: float, tol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chebyshev-accelerated power iteration on a batch of Hermitian PSD matrices (SPEC 6).

    With ``t(G) = 2 G / b - I`` the three-term recurrence ``y_{n+1} = 2 t(G) y_n - y_{n-1}`` gives
    ``y_n = T_n(t(G)) y_0``: eigenvalues in ``[0, b]`` stay bounded by 1 while the leading one
    grows like ``(t + sqrt(t^2 - 1))^n``. Both terms are rescaled by the same factor each step,
    which leaves the direction unchanged and prevents overflow.

    Each step's product ``G y_n`` also gives sigpy's outputs ``G x / ||G x||`` and ``||G x||``
    (``x = y_n / ||y_n||``) and the residual ``||G x - rho x||``. Every second step from the
    fourth on, pixels whose residual is below ``tol`` times their Rayleigh quotient are written
    out; once half of the pixels are done the rest are gathered into a smaller batch, so slowly
    converging pixels (small eigenvalue gap, mostly outside the object) do not keep the others
    iterating.

    Args:
        g: complex64 ``(N, C, C)``, Hermitian positive semi-definite per pixel; overwritten.
        diag: its real diagonal ``(N, C)``, contiguous.
        spare: flat complex64 workspace of at least ``N C^2 / 2`` entries, overwritten.
        iters: most Chebyshev steps.
        bound: largest ``b`` relative to the Rayleigh quotient of the start vector.
        tol: relative residual at which a pixel stops.

    Returns:
        Unit eigenvectors ``(N, C)`` and eigenvalues ``||G x||`` ``(N,)``.
    """
    coils = diag.shape[-1]
    pick = diag.argmax(-1)[:, None, None].expand(-1, coils, 1)
    x = torch.gather(g, -1, pick)  # (N, C, 1): the column with the largest diagonal
    x = x.mul_(_rnorm(x))
    y = torch.bmm(g, x)
    rho = _dot(x, y)
    # trace - rho >= sum of the non-leading eigenvalues >= the second one (G is PSD). rho is at
    # least the largest diagonal, hence at least lambda_1 / C, so the floor keeps 4 / b bounded.
    b = torch.minimum(diag.sum(-1)[:, None, None] - rho, bound * rho).clamp_min(1e-3 * rho).clamp_min(1e-30)
    four = 4.0 / b  # 2 t(G) y = (4 / b) G y - 2 y
    out_x = torch.empty_like(x)
    out_lam = torch.empty_like(rho)
    index = None  # pixels of the current batch in the output; None while it is all of them
    buffers = [g.view(-1), spare]  # the batch of matrices lives in one, is compacted into the other
    prev, cur, free = x, y.mul_(0.5 * four).sub_(x), torch.empty_like(x)
    for n in range(2, iters + 2):
        gx = torch.bmm(g, cur, out=free)
        if n == iters + 1 or (n >= 5 and n % 2 == 1):
            cur_sq = _square(cur)
            rho = _dot(cur, gx) / cur_sq.clamp_min(1e-30)
            done = _square(gx - cur * rho) <= (tol * tol) * rho.square() * cur_sq
            if n == iters + 1:
                done.fill_(True)
            sel = done.view(-1)
            where = sel.nonzero().squeeze(1) if index is None else index[sel]
            finished = gx[sel]
            finished_sq = _square(finished)
            out_x[where] = finished.mul_(_rnorm(finished, finished_sq))
            out_lam[where] = (finished_sq / cur_sq[sel].clamp_min(1e-30)).sqrt()
            keep = (~sel).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            if 2 * keep.numel() <= sel.numel():
                index = keep if index is None else index[keep]
                buffers.reverse()
                target = buffers[0][: keep.numel() * coils * coils].view(-1, coils, coils)
                g = torch.index_select(g, 0, keep, out=target)
                four, prev, cur, gx = four[keep], prev[keep], cur[keep], gx[keep]
        nxt = gx.mul_(four).sub_(cur, alpha=2.0).sub_(prev)
        r = _rnorm(nxt)
        prev, cur, free = cur.mul_(r), nxt.mul_(r), prev
    return out_x.squeeze(-1), out_lam.reshape(-1)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Re(a^H b)`` over the coil axis of ``(N, C, 1)``, shape ``(N, 1, 1)``."""
    return torch.view_as_real(a.conj() * b)[..., 0].sum(-2, keepdim=True)


def _square(x: torch.Tensor) -> torch.Tensor:
    """``||x||^2`` over the coil axis of ``(N, C, 1)``, shape ``(N, 1, 1)``.

    Sums squares of the real view: ``linalg.vector_norm`` over a complex axis is 30x slower here.
    """
    return torch.view_as_real(x).square().sum((-3, -1)).unsqueeze(-1)


def _rnorm(x: torch.Tensor, sq: torch.Tensor | None = None) -> torch.Tensor:
    """``1 / ||x||`` over the coil axis of ``(N, C, 1)``, shape ``(N, 1, 1)``.

    The floor makes a zero vector scale to zero rather than to NaN.
    """
    sq = _square(x) if sq is None else sq
    return sq.clamp_min(1e-30).rsqrt()


def _combine(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """``sum_c conj(S_c) img_c / sum_c |S_c|^2`` over axis ``-3``, 0 where the maps are all 0.

    The torch twin of :func:`monai_cmri.data.coils.combine_coils`, for tensors on any device.
    """
    numerator = (maps.conj() * images).sum(-3)
    denominator = maps.abs().square().sum(-3)
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator))


def _sigpy_maps(k: torch.Tensor, calib: int, kernel: int, thresh: float, crop: float) -> torch.Tensor:
    """Maps from sigpy's ``EspiritCalib`` slice by slice on the CPU (the reference backend)."""
    from sigpy.mri.app import EspiritCalib

    flat = k.detach().cpu().numpy().reshape(-1, *k.shape[-3:])
    maps = [
        EspiritCalib(s, calib_width=calib, thresh=thresh, kernel_width=kernel, crop=crop, show_pbar=False).run()
        for s in flat
    ]
    return torch.from_numpy(np.stack(maps).astype(np.complex64)).reshape(k.shape).to(k.device)


def _like(out: torch.Tensor, like: NdarrayOrTensor) -> NdarrayOrTensor:
    """``out`` as the array type and device of ``like``, with its own dtype."""
    return convert_to_dst_type(out, dst=like, dtype=out.dtype)[0]
