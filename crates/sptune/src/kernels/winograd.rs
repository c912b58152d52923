//! 3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016): forward, input gradient and weight
//! gradient, each with 36 matrix products of a quarter of the direct method's multiplies.
//!
//! An output tile of 4x4 positions reads a 6x6 input tile `d`. With the transforms below
//! (`Bᵀ`, `G`, `Aᵀ`, written out as functions of one row or column), one input channel's
//! contribution is `Aᵀ [(G w Gᵀ) ⊙ (Bᵀ d B)] A`; summed over input channels, each of the 36
//! transformed positions `ξ` is a matrix product over channels:
//!
//! - forward: `M_ξ[cout, tiles] = U_ξ[cout, cin] · V_ξ[cin, tiles]`, `U = G w Gᵀ`,
//!   `V = Bᵀ d B`, then `y = Aᵀ M A` per tile;
//! - input gradient (the adjoint, step by step): `dM = A dy Aᵀ`,
//!   `dV_ξ = U_ξᵀ · dM_ξ`, then `B dV Bᵀ` added onto each 6x6 input tile (tiles overlap by 2);
//! - weight gradient: `dU_ξ[cout, cin] = Σ_tiles dM_ξ · V_ξᵀ`, then `dw = Gᵀ dU G`.
//!
//! Tiles past the output's edge are computed and dropped; input positions outside the image
//! (the padding) read as zero, and their gradients are dropped, so every padding works.
//!
//! Layout: each rayon task takes one row of tiles of one image: it gathers that row's input
//! rows channel-last in a small buffer (channels padded to whole blocks of [`LANES`]), so the
//! transforms run on 16 channels at once with whole-vector loads and stores, and it scatters
//! its output rows back into the NCHW tensor the same way. The transformed tiles are
//! `[ξ][tile][channel]` and the 36 products row-major, one per task. Images go in chunks
//! whose transformed input and output stay within [`CHUNK_FLOATS`]; buffers come from a
//! per-thread pool ([`super::scratch::Scratch`]).
//!
//! Accuracy: the points 0, ±1, ±2 leave float32 errors of 2e-6 to 1e-5 of the largest output
//! or gradient (direct products: about 3e-7), measured against burn's direct convolution in
//! `tests/kernels.rs` (`winograd_shapes_match_burn`, limit 1e-4).

use std::ops::{Add, Mul, Sub};

use rayon::prelude::*;

use super::scratch::Scratch;
use super::simd::simd;
use super::window::{Window, gemm_into};

/// The shapes of one convolution as this module needs them (its own type: `conv`, which calls
/// in here, is not imported back).
pub(super) struct Conv<'a> {
    pub(super) batch: usize,
    pub(super) cin: usize,
    pub(super) cout: usize,
    pub(super) groups: usize,
    pub(super) window: &'a Window,
}

/// Output tile side.
const M: usize = 4;
/// Input tile side (`M + 3 - 1`).
const T: usize = 6;
/// Transformed positions per tile.
const XI: usize = T * T;
/// Channels transformed together (one per vector lane).
const LANES: usize = 16;
/// Largest transformed input and output of one chunk of images, in floats (8 MiB).
pub const CHUNK_FLOATS: usize = 1 << 21;

/// Fewest tiles in a batch for the transforms to pay: the transformed weights are four
/// times the weights, written and read once per pass, so a layer with few tiles runs faster
/// direct. ResNet-18's last stage at 32 px, batch 32 (32 tiles, 512 channels): forward 5.8
/// against 6.4 ms, but input gradient 9.2 against 7.4 ms, 3.4 ms of it the weights'
/// transform (37 MB); its third stage (128 tiles) is twice as fast transformed
/// (`benches/conv_kernels.rs`).
const MIN_TILES: usize = 128;

/// Whether the transforms may be used at all (see [`super::set_winograd`]).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub(super) fn enable(on: bool) {
    ENABLED.store(on, std::sync::atomic::Ordering::Relaxed);
}

thread_local! {
    /// Set on this thread while a [`super::DirectConvolutions`] is held.
    pub(super) static SUSPENDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether `c` runs here: 3x3 kernel, stride 1, no dilation, one group, enough channels and
/// enough tiles for the products to pay for the transforms.
pub(super) fn applies(c: &Conv<'_>) -> bool {
    let w = &c.window;
    let [ho, wo] = w.out_hw;
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
        && !SUSPENDED.get()
        && w.kernel == [3, 3]
        && w.stride == [1, 1]
        && w.dilation == [1, 1]
        && c.groups == 1
        && c.cin >= 8
        && c.cout >= 8
        && c.batch * ho.div_ceil(M) * wo.div_ceil(M) >= MIN_TILES
}

/// One float per lane: a tile position of [`LANES`] channels.
type Lanes = [f32; LANES];

/// What the 1-D transforms compute on.
trait Num: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<f32, Output = Self> {}
impl Num for f32 {}

/// `Bᵀ d`: the input transform of one row or column.
#[inline(always)]
fn bt<N: Num>(d: [N; T]) -> [N; T] {
    [
        d[0] * 4.0 - d[2] * 5.0 + d[4],
        d[3] + d[4] - (d[1] + d[2]) * 4.0,
        (d[1] - d[2]) * 4.0 - d[3] + d[4],
        (d[3] - d[1]) * 2.0 - d[2] + d[4],
        (d[1] - d[3]) * 2.0 - d[2] + d[4],
        d[1] * 4.0 - d[3] * 5.0 + d[5],
    ]
}

/// `B v`: the adjoint of [`bt`].
#[inline(always)]
fn b<N: Num>(v: [N; T]) -> [N; T] {
    [
        v[0] * 4.0,
        (v[2] - v[1] + v[5]) * 4.0 + (v[4] - v[3]) * 2.0,
        v[0] * -5.0 - (v[1] + v[2]) * 4.0 - v[3] - v[4],
        v[1] - v[2] + (v[3] - v[4]) * 2.0 - v[5] * 5.0,
        v[0] + v[1] + v[2] + v[3] + v[4],
        v[5],
    ]
}

/// `G g`: the weight transform of one kernel row or column.
#[inline(always)]
fn g<N: Num>(w: [N; 3]) -> [N; T] {
    let (s, d) = (w[0] + w[2], w[1]);
    [
        w[0] * 0.25,
        (s + d) * (-1.0 / 6.0),
        (s - d) * (-1.0 / 6.0),
        w[0] * (1.0 / 24.0) + d * (1.0 / 12.0) + w[2] * (1.0 / 6.0),
        w[0] * (1.0 / 24.0) - d * (1.0 / 12.0) + w[2] * (1.0 / 6.0),
        w[2],
    ]
}

/// `Gᵀ u`: the adjoint of [`g`].
#[inline(always)]
fn gt<N: Num>(u: [N; T]) -> [N; 3] {
    let (p, q) = (u[1] + u[2], u[3] + u[4]);
    [
        u[0] * 0.25 - p * (1.0 / 6.0) + q * (1.0 / 24.0),
        (u[2] - u[1]) * (1.0 / 6.0) + (u[3] - u[4]) * (1.0 / 12.0),
        q * (1.0 / 6.0) - p * (1.0 / 6.0) + u[5],
    ]
}

/// `Aᵀ m`: the output transform of one row or column.
#[inline(always)]
fn at<N: Num>(m: [N; T]) -> [N; M] {
    let (p1, d1) = (m[1] + m[2], m[1] - m[2]);
    let (p2, d2) = (m[3] + m[4], m[3] - m[4]);
    [
        m[0] + p1 + p2,
        d1 + d2 * 2.0,
        p1 + p2 * 4.0,
        d1 + d2 * 8.0 + m[5],
    ]
}

/// `A y`: the adjoint of [`at`].
#[inline(always)]
fn a<N: Num>(y: [N; M]) -> [N; T] {
    let (e, o) = (y[0] + y[2], y[1] + y[3]);
    let (e2, o2) = (y[0] + y[2] * 4.0, (y[1] + y[3] * 4.0) * 2.0);
    [y[0], e + o, e - o, e2 + o2, e2 - o2, y[3]]
}

/// `F x Fᵀ` for the 1-D transform `f` (`I` to `O` values), on every lane: `x` is an `I×I`
/// tile and `out` an `O×O` one, row-major, a [`Lanes`] per position. The lane loops are
/// innermost, so each formula becomes a few vector operations.
#[inline(always)]
fn both<const I: usize, const O: usize>(
    x: &[Lanes],
    f: impl Fn([f32; I]) -> [f32; O],
    out: &mut [Lanes],
    cols: &mut [Lanes; XI],
) {
    let (x, out) = (&x[..I * I], &mut out[..O * O]);
    // cols[o·I + c] = f(column c of x)[o]
    for c in 0..I {
        for l in 0..LANES {
            let mut v = [0f32; I];
            for (r, v) in v.iter_mut().enumerate() {
                *v = x[r * I + c][l];
            }
            for (o, y) in f(v).into_iter().enumerate() {
                cols[o * I + c][l] = y;
            }
        }
    }
    for o in 0..O {
        for l in 0..LANES {
            let mut v = [0f32; I];
            for (c, v) in v.iter_mut().enumerate() {
                *v = cols[o * I + c][l];
            }
            for (o2, y) in f(v).into_iter().enumerate() {
                out[o * O + o2][l] = y;
            }
        }
    }
}

/// A task's tile buffers, zeroed once and then overwritten tile after tile (zeroing them
/// per tile cost a `memset` call each, a third of a transform's time).
struct Buf {
    /// The tile read.
    x: [Lanes; XI],
    /// Its transform.
    y: [Lanes; XI],
    /// Between the two passes of [`both`].
    cols: [Lanes; XI],
}

impl Buf {
    fn new() -> Buf {
        Buf {
            x: [[0.0; LANES]; XI],
            y: [[0.0; LANES]; XI],
            cols: [[0.0; LANES]; XI],
        }
    }
    /// `F x Fᵀ` of `self.x` into `self.y` ([`both`]).
    #[inline(always)]
    fn apply<const I: usize, const O: usize>(&mut self, f: impl Fn([f32; I]) -> [f32; O]) {
        both(&self.x, f, &mut self.y, &mut self.cols);
    }
}

/// A buffer written by rayon tasks at disjoint places (each task owns a block of channels).
#[derive(Clone, Copy)]
struct Shared {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks reach the buffer only through `Shared::at`, at places no other task reaches
// (the callers' contract); the buffer is borrowed by the caller for the whole parallel loop.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn new(buf: &mut [f32]) -> Shared {
        Shared {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }
    /// `len` floats from `start`.
    ///
    /// # Safety
    /// No other task reaches these floats while the slice lives.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    unsafe fn at(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len);
        // SAFETY: in bounds (asserted); exclusive by the caller's contract
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// The block of [`LANES`] floats at `src[..]`: a fixed-size copy, never a call to `memcpy`.
#[inline(always)]
fn load(src: &[f32]) -> Lanes {
    src[..LANES].try_into().expect("a whole block")
}

/// `dst[..LANES] = src`, as [`load`].
#[inline(always)]
fn store(dst: &mut [f32], src: &Lanes) {
    let dst: &mut Lanes = (&mut dst[..LANES]).try_into().expect("a whole block");
    *dst = *src;
}

/// `c` rounded up to whole blocks of [`LANES`] channels: the channel-last buffers and the
/// transformed weights hold zero channels up to it, so every block is whole.
fn padded(c: usize) -> usize {
    c.div_ceil(LANES) * LANES
}

/// `dst[c·ds + r] = src[r·ss + c]` for `r < rows`, `c < cols`: a transpose between row
/// strides `ss` and `ds`, on rayon's threads (16 columns of `src` per task). It goes through
/// 16x16 blocks so that each write is a whole cache line: writing column by column straight
/// into rows a power of two apart made the lines of one column evict each other (4 KiB
/// aliasing), 3x slower.
fn transpose(src: &[f32], [rows, cols]: [usize; 2], ss: usize, dst: &mut [f32], ds: usize) {
    const B: usize = 16;
    dst[..(cols - 1) * ds + rows]
        .par_chunks_mut(B * ds)
        .enumerate()
        .for_each(|(k, d)| {
            let (c0, nc) = (k * B, B.min(cols - k * B));
            for r0 in (0..rows).step_by(B) {
                let nr = B.min(rows - r0);
                let mut blk = [[0f32; B]; B];
                for (i, row) in blk.iter_mut().enumerate().take(nr) {
                    let s = &src[(r0 + i) * ss + c0..];
                    if nc == B {
                        *row = s[..B].try_into().expect("a full block");
                    } else {
                        row[..nc].copy_from_slice(&s[..nc]);
                    }
                }
                for j in 0..nc {
                    let out = &mut d[j * ds + r0..][..nr];
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = blk[i][j];
                    }
                }
            }
        });
}

/// Rows `y0..y0+n` of one image's planes `img` (`[ch][h][w]`) channel-last into `buf`
/// (`[n][w][chp]`); rows outside `0..h` and channels from `ch` are zero.
fn gather_rows(
    img: &[f32],
    [ch, h, w]: [usize; 3],
    y0: isize,
    n: usize,
    chp: usize,
    buf: &mut [f32],
) {
    let buf = &mut buf[..n * w * chp];
    let outside = y0 < 0 || y0 + n as isize > h as isize;
    if outside || chp > ch {
        buf.fill(0.0);
    }
    for r in 0..n {
        let y = y0 + r as isize;
        if y < 0 || y >= h as isize {
            continue;
        }
        let row = &mut buf[r * w * chp..][..w * chp];
        for c in 0..ch {
            let src = &img[(c * h + y as usize) * w..][..w];
            for (x, v) in src.iter().enumerate() {
                row[x * chp + c] = *v;
            }
        }
    }
}

/// The channel-last rows `buf` (`[n][w][chp]`) added onto (`add`) or written into rows
/// `y0..y0+n` of one image's planes (`[ch][h][w]`, from `base` in `out`), rows outside `0..h`
/// dropped.
///
/// # Safety
/// No other task reaches those rows of that image meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn scatter_rows(
    buf: &[f32],
    [ch, h, w]: [usize; 3],
    y0: isize,
    n: usize,
    chp: usize,
    (out, base): (&Shared, usize),
    add: bool,
) {
    for r in 0..n {
        let y = y0 + r as isize;
        if y < 0 || y >= h as isize {
            continue;
        }
        let row = &buf[r * w * chp..][..w * chp];
        for c in 0..ch {
            // SAFETY: the caller's task owns row y of this image's planes
            let dst = unsafe { out.at(base + (c * h + y as usize) * w, w) };
            if add {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d += row[x * chp + c];
                }
            } else {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = row[x * chp + c];
                }
            }
        }
    }
}

/// The tile rows `(image in the chunk, tile row)` of a chunk of `nb` images, on rayon's
/// threads; with `parity`, only the rows of that parity (the input rows of two tile rows
/// overlap when they are neighbours, never when they are two apart).
fn tile_rows(
    nb: usize,
    th: usize,
    parity: Option<usize>,
) -> impl ParallelIterator<Item = (usize, usize)> {
    let rows: Vec<(usize, usize)> = (0..nb)
        .flat_map(|b| (0..th).map(move |ty| (b, ty)))
        .filter(|&(_, ty)| parity.is_none_or(|p| ty % 2 == p))
        .collect();
    rows.into_par_iter()
}

/// Geometry of one convolution as the transforms need it.
struct Geo {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    /// Top and left padding.
    pt: isize,
    pl: isize,
    /// Tile rows and columns per image.
    th: usize,
    tw: usize,
}

impl Geo {
    fn of(c: &Conv<'_>) -> Geo {
        let w = &c.window;
        let [ho, wo] = w.out_hw;
        Geo {
            h: w.in_hw[0],
            w: w.in_hw[1],
            ho,
            wo,
            pt: w.pad[0].0 as isize,
            pl: w.pad[1].0 as isize,
            th: ho.div_ceil(M),
            tw: wo.div_ceil(M),
        }
    }
    fn tiles_per_image(&self) -> usize {
        self.th * self.tw
    }
    fn p_in(&self) -> usize {
        self.h * self.w
    }
    fn p_out(&self) -> usize {
        self.ho * self.wo
    }
    /// The chunks `(first image, images)`, so that a chunk's transformed input and output
    /// hold at most [`CHUNK_FLOATS`].
    fn chunks(&self, c: &Conv<'_>) -> Vec<(usize, usize)> {
        let per_image = XI * (padded(c.cin) + padded(c.cout)) * self.tiles_per_image();
        let step = (CHUNK_FLOATS / per_image.max(1)).clamp(1, c.batch);
        (0..c.batch)
            .step_by(step)
            .map(|b0| (b0, step.min(c.batch - b0)))
            .collect()
    }
}

/// `U[ξ][ci][co] = (G w[co][ci] Gᵀ)_ξ`, `[36][padded(cin)][padded(cout)]`, zero outside
/// the real channels.
fn weight_transform(c: &Conv<'_>, w: &[f32]) -> Scratch {
    let (cin, cout) = (c.cin, c.cout);
    let (cip, cop) = (padded(cin), padded(cout));
    // wt[ci·9 + k][co] = w[co][ci][k], zero for co ≥ cout
    let mut wt = Scratch::new(cin * 9 * cop);
    transpose(w, [cout, cin * 9], cin * 9, &mut wt, cop);
    if cop > cout {
        wt.par_chunks_mut(cop).for_each(|row| row[cout..].fill(0.0));
    }
    let mut u = Scratch::new(XI * cip * cop);
    let us = Shared::new(&mut u);
    (0..cip).into_par_iter().for_each(|ci| {
        simd(
            #[inline(always)]
            || {
                let mut buf = Buf::new();
                for c0 in (0..cop).step_by(LANES) {
                    if ci < cin {
                        for (i, k) in buf.x[..9].iter_mut().enumerate() {
                            *k = load(&wt[(ci * 9 + i) * cop + c0..]);
                        }
                        buf.apply(g);
                    }
                    for (xi, v) in buf.y.iter().enumerate() {
                        // SAFETY: row ci of every U_ξ belongs to this task
                        store(unsafe { us.at((xi * cip + ci) * cop + c0, LANES) }, v);
                    }
                }
            },
        )
    });
    u
}

/// `V[ξ][t][ci] = (Bᵀ d B)_ξ` (`[36][nt][padded(cin)]`) for the input tiles `d` of images
/// `b0..b0+nb` of `x`, each task one tile row (its six input rows gathered channel-last).
fn input_transform(c: &Conv<'_>, geo: &Geo, (b0, nb): (usize, usize), x: &[f32], v: &mut [f32]) {
    let (cin, cip, tpi) = (c.cin, padded(c.cin), geo.tiles_per_image());
    let (nt, img_len, w) = (nb * tpi, cin * geo.p_in(), geo.w);
    let vs = Shared::new(v);
    tile_rows(nb, geo.th, None).for_each(|(b, ty)| {
        let mut rows = Scratch::new(T * w * cip);
        let y0 = (ty * M) as isize - geo.pt;
        let img = &x[(b0 + b) * img_len..][..img_len];
        gather_rows(img, [cin, geo.h, w], y0, T, cip, &mut rows);
        simd(
            #[inline(always)]
            || {
                let mut buf = Buf::new();
                for tx in 0..geo.tw {
                    let t = b * tpi + ty * geo.tw + tx;
                    let x0 = (tx * M) as isize - geo.pl;
                    let inside = x0 >= 0 && x0 as usize + T <= w;
                    for c0 in (0..cip).step_by(LANES) {
                        if !inside {
                            buf.x = [[0.0; LANES]; XI];
                        }
                        for s in 0..T {
                            let xx = x0 + s as isize;
                            if xx < 0 || xx >= w as isize {
                                continue;
                            }
                            for r in 0..T {
                                buf.x[r * T + s] = load(&rows[(r * w + xx as usize) * cip + c0..]);
                            }
                        }
                        buf.apply(bt);
                        for (xi, v) in buf.y.iter().enumerate() {
                            // SAFETY: row t of every V_ξ belongs to this task
                            store(unsafe { vs.at((xi * nt + t) * cip + c0, LANES) }, v);
                        }
                    }
                }
            },
        )
    });
}

/// `dM[ξ][t][co] = (A dy Aᵀ)_ξ` (`[36][nt][padded(cout)]`) for the output-gradient tiles of
/// images `b0..b0+nb` of `gy` (positions past the output's edge are zero), each task one tile
/// row.
fn output_grad_transform(
    c: &Conv<'_>,
    geo: &Geo,
    (b0, nb): (usize, usize),
    gy: &[f32],
    dm: &mut [f32],
) {
    let (cout, cop, tpi) = (c.cout, padded(c.cout), geo.tiles_per_image());
    let (nt, img_len, wo) = (nb * tpi, cout * geo.p_out(), geo.wo);
    let ds = Shared::new(dm);
    tile_rows(nb, geo.th, None).for_each(|(b, ty)| {
        let mut rows = Scratch::new(M * wo * cop);
        let img = &gy[(b0 + b) * img_len..][..img_len];
        gather_rows(
            img,
            [cout, geo.ho, wo],
            (ty * M) as isize,
            M,
            cop,
            &mut rows,
        );
        simd(
            #[inline(always)]
            || {
                let mut buf = Buf::new();
                for tx in 0..geo.tw {
                    let t = b * tpi + ty * geo.tw + tx;
                    let ns = M.min(wo - tx * M);
                    for c0 in (0..cop).step_by(LANES) {
                        if ns < M {
                            buf.x = [[0.0; LANES]; XI];
                        }
                        for r in 0..M {
                            for s in 0..ns {
                                let at = (r * wo + tx * M + s) * cop + c0;
                                buf.x[r * M + s] = load(&rows[at..]);
                            }
                        }
                        buf.apply(a);
                        for (xi, v) in buf.y.iter().enumerate() {
                            // SAFETY: row t of every dM_ξ belongs to this task
                            store(unsafe { ds.at((xi * nt + t) * cop + c0, LANES) }, v);
                        }
                    }
                }
            },
        )
    });
}

/// `out_ξ (+)= lhs_ξ · rhs_ξ` (`[m][n]`, row-major) for the 36 positions `ξ`, one product per
/// rayon task; each operand is its buffer, the distance between two `ξ`, and its (row,
/// column) strides.
fn products(
    out: &mut [f32],
    [m, k, n]: [usize; 3],
    lhs: (&[f32], usize, [usize; 2]),
    rhs: (&[f32], usize, [usize; 2]),
    accumulate: bool,
) {
    out[..XI * m * n]
        .par_chunks_mut(m * n)
        .enumerate()
        .for_each(|(xi, o)| {
            gemm_into(
                o,
                [n, 1],
                &lhs.0[xi * lhs.1..],
                lhs.2,
                &rhs.0[xi * rhs.1..],
                rhs.2,
                [m, k, n],
                accumulate,
                false,
            );
        });
}

/// The convolution of `x` with `w` into `y` (`[batch, cout, ho, wo]`, overwritten).
pub(super) fn forward(c: &Conv<'_>, x: &[f32], w: &[f32], y: &mut [f32]) {
    let geo = Geo::of(c);
    let (cout, cip, cop) = (c.cout, padded(c.cin), padded(c.cout));
    let (tpi, p_out, wo) = (geo.tiles_per_image(), geo.p_out(), geo.wo);
    let u = weight_transform(c, w);
    let chunks = geo.chunks(c);
    let cap = chunks[0].1;
    let mut v = Scratch::new(XI * cap * tpi * cip);
    let mut m = Scratch::new(XI * cap * tpi * cop);
    let ys = Shared::new(y);
    for (b0, nb) in chunks {
        let nt = nb * tpi;
        input_transform(c, &geo, (b0, nb), x, &mut v);
        // M_ξ[nt][cop] = V_ξ[nt][cip] · U_ξ[cip][cop]
        products(
            &mut m,
            [nt, cip, cop],
            (&v, nt * cip, [cip, 1]),
            (&u, cip * cop, [cop, 1]),
            false,
        );
        // each task one tile row: its four output rows channel-last, then into y
        tile_rows(nb, geo.th, None).for_each(|(b, ty)| {
            let mut rows = Scratch::new(M * wo * cop);
            let nr = M.min(geo.ho - ty * M);
            simd(
                #[inline(always)]
                || {
                    let mut buf = Buf::new();
                    for tx in 0..geo.tw {
                        let t = b * tpi + ty * geo.tw + tx;
                        let ns = M.min(wo - tx * M);
                        for c0 in (0..cop).step_by(LANES) {
                            for (xi, e) in buf.x.iter_mut().enumerate() {
                                *e = load(&m[(xi * nt + t) * cop + c0..]);
                            }
                            buf.apply(at);
                            for r in 0..nr {
                                for s in 0..ns {
                                    let dst = &mut rows[(r * wo + tx * M + s) * cop + c0..];
                                    store(dst, &buf.y[r * M + s]);
                                }
                            }
                        }
                    }
                },
            );
            let (shape, base) = ([cout, geo.ho, wo], (b0 + b) * cout * p_out);
            // SAFETY: tile rows do not share output rows
            unsafe { scatter_rows(&rows, shape, (ty * M) as isize, nr, cop, (&ys, base), false) };
        });
    }
}

/// The gradient with respect to the input, given `gy`, into `gx` (`[batch, cin, h, w]`,
/// zeroed by the caller).
pub(super) fn input_grad(c: &Conv<'_>, w: &[f32], gy: &[f32], gx: &mut [f32]) {
    let geo = Geo::of(c);
    let (cin, cip, cop) = (c.cin, padded(c.cin), padded(c.cout));
    let (tpi, p_in, wi) = (geo.tiles_per_image(), geo.p_in(), geo.w);
    let u = weight_transform(c, w);
    let chunks = geo.chunks(c);
    let cap = chunks[0].1;
    let mut dm = Scratch::new(XI * cap * tpi * cop);
    let mut dv = Scratch::new(XI * cap * tpi * cip);
    let gxs = Shared::new(gx);
    for (b0, nb) in chunks {
        let nt = nb * tpi;
        output_grad_transform(c, &geo, (b0, nb), gy, &mut dm);
        // dV_ξ[nt][cip] = dM_ξ[nt][cop] · U_ξᵀ[cop][cip]
        products(
            &mut dv,
            [nt, cop, cip],
            (&dm, nt * cop, [cop, 1]),
            (&u, cip * cop, [1, cop]),
            false,
        );
        // each task one tile row: its six input rows summed channel-last, then added into
        // gx; neighbouring tile rows share two input rows, so even rows first, then odd
        for parity in 0..2 {
            tile_rows(nb, geo.th, Some(parity)).for_each(|(b, ty)| {
                let mut rows = Scratch::new(T * wi * cip);
                rows.fill(0.0);
                simd(
                    #[inline(always)]
                    || {
                        let mut buf = Buf::new();
                        for tx in 0..geo.tw {
                            let t = b * tpi + ty * geo.tw + tx;
                            let x0 = (tx * M) as isize - geo.pl;
                            for c0 in (0..cip).step_by(LANES) {
                                for (xi, e) in buf.x.iter_mut().enumerate() {
                                    *e = load(&dv[(xi * nt + t) * cip + c0..]);
                                }
                                buf.apply(self::b);
                                for s in 0..T {
                                    let xx = x0 + s as isize;
                                    if xx < 0 || xx >= wi as isize {
                                        continue;
                                    }
                                    for r in 0..T {
                                        let at = (r * wi + xx as usize) * cip + c0;
                                        let dst = &mut rows[at..at + LANES];
                                        for (o, v) in dst.iter_mut().zip(&buf.y[r * T + s]) {
                                            *o += v;
                                        }
                                    }
                                }
                            }
                        }
                    },
                );
                let (y0, base) = ((ty * M) as isize - geo.pt, (b0 + b) * cin * p_in);
                // SAFETY: the input rows of this parity's tile rows do not overlap
                unsafe { scatter_rows(&rows, [cin, geo.h, wi], y0, T, cip, (&gxs, base), true) };
            });
        }
    }
}

/// The gradient with respect to the weight, given `x` and `gy`, into `gw` (`[cout, cin, 3,
/// 3]`, overwritten).
pub(super) fn weight_grad(c: &Conv<'_>, x: &[f32], gy: &[f32], gw: &mut [f32]) {
    let geo = Geo::of(c);
    let (cin, cout) = (c.cin, c.cout);
    let (cip, cop) = (padded(cin), padded(cout));
    let tpi = geo.tiles_per_image();
    let chunks = geo.chunks(c);
    let cap = chunks[0].1;
    let mut v = Scratch::new(XI * cap * tpi * cip);
    let mut dm = Scratch::new(XI * cap * tpi * cop);
    let mut du = Scratch::new(XI * cip * cop);
    for (i, &(b0, nb)) in chunks.iter().enumerate() {
        let nt = nb * tpi;
        input_transform(c, &geo, (b0, nb), x, &mut v);
        output_grad_transform(c, &geo, (b0, nb), gy, &mut dm);
        // dU_ξ[cip][cop] (+)= V_ξᵀ[cip][nt] · dM_ξ[nt][cop]
        products(
            &mut du,
            [cip, nt, cop],
            (&v, nt * cip, [1, cip]),
            (&dm, nt * cop, [cop, 1]),
            i > 0,
        );
    }
    // dw[co][ci] = Gᵀ dU[ci][co] G, written [ci][3x3][cop] and then transposed
    let mut dwt = Scratch::new(cin * 9 * cop);
    dwt.par_chunks_mut(9 * cop)
        .enumerate()
        .for_each(|(ci, dst)| {
            simd(
                #[inline(always)]
                || {
                    let mut buf = Buf::new();
                    for c0 in (0..cop).step_by(LANES) {
                        for (xi, e) in buf.x.iter_mut().enumerate() {
                            *e = load(&du[(xi * cip + ci) * cop + c0..]);
                        }
                        buf.apply(gt);
                        for (k, v) in buf.y[..9].iter().enumerate() {
                            store(&mut dst[k * cop + c0..], v);
                        }
                    }
                },
            )
        });
    transpose(&dwt, [cin * 9, cout], cop, gw, cin * 9);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_numbers as numbers;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    /// In one dimension, `Aᵀ[(G g) ⊙ (Bᵀ d)]` is the correlation `y_i = Σ_k d_{i+k} g_k`
    /// (the definition, computed directly).
    #[test]
    fn one_dimension_is_correlation() {
        for seed in 1..50 {
            let v = numbers(seed, 9);
            let (d, w): ([f32; 6], [f32; 3]) = (
                std::array::from_fn(|i| v[i]),
                std::array::from_fn(|i| v[6 + i]),
            );
            let (gd, gw) = (bt(d), g(w));
            let y = at(std::array::from_fn(|i| gd[i] * gw[i]));
            for (i, yi) in y.iter().enumerate() {
                let direct: f32 = (0..3).map(|k| d[i + k] * w[k]).sum();
                assert!((yi - direct).abs() < 1e-5, "{i}: {yi} vs {direct}");
            }
        }
    }

    /// `b`, `gt` and `a` are the transposes of `bt`, `g` and `at`: `⟨F x, y⟩ = ⟨x, Fᵀ y⟩`.
    #[test]
    fn adjoints_are_transposes() {
        for seed in 1..50 {
            let v = numbers(seed, 12);
            let x6: [f32; 6] = std::array::from_fn(|i| v[i]);
            let y6: [f32; 6] = std::array::from_fn(|i| v[6 + i]);
            let x3: [f32; 3] = std::array::from_fn(|i| v[i]);
            let x4: [f32; 4] = std::array::from_fn(|i| v[i]);
            let close = |p: f64, q: f64| assert!((p - q).abs() < 1e-5 * (1.0 + p.abs()), "{p} {q}");
            close(dot(&bt(x6), &y6), dot(&x6, &b(y6)));
            close(dot(&g(x3), &y6), dot(&x3, &gt(y6)));
            close(dot(&at(y6), &x4), dot(&y6, &a(x4)));
        }
    }
}

#[cfg(test)]
mod suspension {
    use super::*;
    use crate::kernels::DirectConvolutions;

    #[test]
    fn a_hold_suspends_the_transforms_on_its_thread_only() {
        // ResNet-18's first stage at 32 px, batch 32: 8x8 tiles per image, 2048 in all
        let window = Window::new([3, 3], [1, 1], [1, 1], [(1, 1), (1, 1)], [32, 32]);
        let c = Conv {
            batch: 32,
            cin: 64,
            cout: 64,
            groups: 1,
            window: &window,
        };
        assert!(applies(&c));
        {
            let _outer = DirectConvolutions::hold();
            assert!(!applies(&c));
            {
                let _inner = DirectConvolutions::hold();
                assert!(!applies(&c));
            }
            // the inner hold's drop restores the outer's state, not "on"
            assert!(!applies(&c));
            let elsewhere = std::thread::spawn(|| {
                let window = Window::new([3, 3], [1, 1], [1, 1], [(1, 1), (1, 1)], [32, 32]);
                applies(&Conv {
                    batch: 32,
                    cin: 64,
                    cout: 64,
                    groups: 1,
                    window: &window,
                })
            });
            assert!(
                elsewhere.join().unwrap(),
                "another thread lost the transforms"
            );
        }
        assert!(applies(&c));
    }
}
