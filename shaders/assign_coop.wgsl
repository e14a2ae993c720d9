// Nearest-centroid candidates with cooperative matrices (tensor cores):
// f16 products, f32 accumulation, then the best candidates re-scored
// exactly in f32. Its own module (it needs `enable f16` and the
// cooperative-matrix extension); the bindings are assign.wgsl's, except
// that `cand` holds CANDS (key, index) pairs per row, best first.
//
// A workgroup is one subgroup of 32 invocations (cooperative operations
// need control flow uniform across the workgroup, so the workgroup cannot
// hand tiles to its subgroups): it computes a 64-row × 64-centroid tile as
// 4 × 4 tiles of 16 × 16, sixteen f32 accumulators. Per 32-float
// slice of depth the rows and centroids are staged in workgroup memory as
// f16 (scaled by powers of two the host chose, so that no value overflows
// f16 and few fall below its normal range); after the whole depth the
// accumulators go to workgroup memory and each invocation turns the 64 dot
// products of its two rows (li, li + 32) into keys (bias + scale · dot) and keeps the CANDS lowest
// (ties to the lower index: centroids are visited in order).
//
// In the chunk's last dispatch (`last`) each row re-scores its candidates
// exactly from the f32 inputs and writes the best, plus a flag saying
// whether the f16 ranking could have hidden the true best: when the worst
// kept candidate's approximate key is within `4 · (tol · ‖x‖ + tol0)` of the best
// one's, a centroid outside the candidates might be nearer, and the host
// re-runs that row with the f32 kernel. `tol · ‖x‖ + tol0` is the host's
// bound on the f16 error of one dot product (tol includes max ‖c‖); keys
// scale dot products by at most 2, and two keys are compared, hence 4.
//
// Rows: 64 per workgroup; centroid block: 64; dp4 a multiple of 8.
// Loop trips per block: dp4 / 8 · 17 (depth, staging) + 64 (keys); the
// final re-score loops 2 · (1 + CANDS) · dp4.

enable f16;
enable wgpu_cooperative_matrix;

struct Params {
    dp4: u32,
    c_begin: u32,
    c_end: u32,
    c_base: u32,
    alpha: f32,   // −2 (L2) or −1 (inner product)
    first: u32,
    init: f32,    // +inf
    last: u32,    // 1: re-score and write the final answer
    sx: f32,      // power-of-two scale of x before the f16 conversion
    sc: f32,      // same for the centroids
    tol: f32,     // f16 error bound of a dot product per unit of ‖x‖
    tol0: f32,    // and its part independent of ‖x‖ (f16 subnormals)
}

struct Best {
    key: f32,
    idx: u32,
}

const CANDS: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cen: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> cand: array<Best>;

// 64 rows × 32 depth, row-major (A operands); 64 centroids × 32 depth,
// centroid-major (column-major B operands).
var<workgroup> xs: array<f16, 2048>;
var<workgroup> cs: array<f16, 2048>;
// The 64 × 64 dot products of a block, row-major.
var<workgroup> dots: array<f32, 4096>;

// Insert (k, i) into the sorted candidates; equal keys keep the earlier.
fn insert(c: ptr<function, array<Best, 4>>, k: f32, i: u32) {
    if !(k < (*c)[3].key) {
        return;
    }
    var j = 3u;
    loop {
        if j == 0u || !(k < (*c)[j - 1u].key) {
            break;
        }
        (*c)[j] = (*c)[j - 1u];
        j -= 1u;
    }
    (*c)[j] = Best(k, i);
}

@compute @workgroup_size(32)
fn assign_coop(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let dp4 = p.dp4;
    let row0 = wid.x * 64u;
    // This invocation's rows: ra = row0 + li and rb = ra + 32.
    let ra = row0 + li;
    let rb = ra + 32u;

    var ca: array<Best, 4>;
    var cb: array<Best, 4>;
    for (var j = 0u; j < CANDS; j++) {
        ca[j] = Best(p.init, 0u);
        cb[j] = Best(p.init, 0u);
    }
    if p.first == 0u {
        for (var j = 0u; j < CANDS; j++) {
            ca[j] = cand[ra * CANDS + j];
            cb[j] = cand[rb * CANDS + j];
        }
    }

    for (var c0 = p.c_begin; c0 < p.c_end; c0 += 64u) {
        var acc00: coop_mat16x16<f32, C>;
        var acc01: coop_mat16x16<f32, C>;
        var acc02: coop_mat16x16<f32, C>;
        var acc03: coop_mat16x16<f32, C>;
        var acc10: coop_mat16x16<f32, C>;
        var acc11: coop_mat16x16<f32, C>;
        var acc12: coop_mat16x16<f32, C>;
        var acc13: coop_mat16x16<f32, C>;
        var acc20: coop_mat16x16<f32, C>;
        var acc21: coop_mat16x16<f32, C>;
        var acc22: coop_mat16x16<f32, C>;
        var acc23: coop_mat16x16<f32, C>;
        var acc30: coop_mat16x16<f32, C>;
        var acc31: coop_mat16x16<f32, C>;
        var acc32: coop_mat16x16<f32, C>;
        var acc33: coop_mat16x16<f32, C>;
        for (var d0 = 0u; d0 < dp4; d0 += 8u) {
            // 64 rows × 8 vec4 of each operand: 16 vec4 each per invocation.
            for (var t = 0u; t < 16u; t++) {
                let e = li + 32u * t;
                let r = e / 8u;
                let q = e % 8u;
                let xv = vec4<f16>(x[(row0 + r) * dp4 + d0 + q] * p.sx);
                let cv = vec4<f16>(cen[(c0 + r) * dp4 + d0 + q] * p.sc);
                let at = r * 32u + q * 4u;
                xs[at] = xv.x;
                xs[at + 1u] = xv.y;
                xs[at + 2u] = xv.z;
                xs[at + 3u] = xv.w;
                cs[at] = cv.x;
                cs[at + 1u] = cv.y;
                cs[at + 2u] = cv.z;
                cs[at + 3u] = cv.w;
            }
            workgroupBarrier();
            for (var k0 = 0u; k0 < 32u; k0 += 16u) {
                let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[0u + k0], 32u);
                let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[512u + k0], 32u);
                let a2 = coopLoadT<coop_mat16x16<f16, A>>(&xs[1024u + k0], 32u);
                let a3 = coopLoadT<coop_mat16x16<f16, A>>(&xs[1536u + k0], 32u);
                let b0 = coopLoad<coop_mat16x16<f16, B>>(&cs[0u + k0], 32u);
                let b1 = coopLoad<coop_mat16x16<f16, B>>(&cs[512u + k0], 32u);
                let b2 = coopLoad<coop_mat16x16<f16, B>>(&cs[1024u + k0], 32u);
                let b3 = coopLoad<coop_mat16x16<f16, B>>(&cs[1536u + k0], 32u);
                acc00 = coopMultiplyAdd(a0, b0, acc00);
                acc01 = coopMultiplyAdd(a0, b1, acc01);
                acc02 = coopMultiplyAdd(a0, b2, acc02);
                acc03 = coopMultiplyAdd(a0, b3, acc03);
                acc10 = coopMultiplyAdd(a1, b0, acc10);
                acc11 = coopMultiplyAdd(a1, b1, acc11);
                acc12 = coopMultiplyAdd(a1, b2, acc12);
                acc13 = coopMultiplyAdd(a1, b3, acc13);
                acc20 = coopMultiplyAdd(a2, b0, acc20);
                acc21 = coopMultiplyAdd(a2, b1, acc21);
                acc22 = coopMultiplyAdd(a2, b2, acc22);
                acc23 = coopMultiplyAdd(a2, b3, acc23);
                acc30 = coopMultiplyAdd(a3, b0, acc30);
                acc31 = coopMultiplyAdd(a3, b1, acc31);
                acc32 = coopMultiplyAdd(a3, b2, acc32);
                acc33 = coopMultiplyAdd(a3, b3, acc33);
            }
            workgroupBarrier();
        }
        coopStoreT(acc00, &dots[0u], 64u);
        coopStoreT(acc01, &dots[16u], 64u);
        coopStoreT(acc02, &dots[32u], 64u);
        coopStoreT(acc03, &dots[48u], 64u);
        coopStoreT(acc10, &dots[1024u], 64u);
        coopStoreT(acc11, &dots[1040u], 64u);
        coopStoreT(acc12, &dots[1056u], 64u);
        coopStoreT(acc13, &dots[1072u], 64u);
        coopStoreT(acc20, &dots[2048u], 64u);
        coopStoreT(acc21, &dots[2064u], 64u);
        coopStoreT(acc22, &dots[2080u], 64u);
        coopStoreT(acc23, &dots[2096u], 64u);
        coopStoreT(acc30, &dots[3072u], 64u);
        coopStoreT(acc31, &dots[3088u], 64u);
        coopStoreT(acc32, &dots[3104u], 64u);
        coopStoreT(acc33, &dots[3120u], 64u);
        workgroupBarrier();
        let s = p.alpha / (p.sx * p.sc);
        for (var j = 0u; j < 64u; j++) {
            let b = bias[c0 + j];
            let g = p.c_base + c0 + j;
            insert(&ca, b + s * dots[li * 64u + j], g);
            insert(&cb, b + s * dots[(li + 32u) * 64u + j], g);
        }
        workgroupBarrier();
    }

    if p.last == 0u {
        for (var j = 0u; j < CANDS; j++) {
            cand[ra * CANDS + j] = ca[j];
            cand[rb * CANDS + j] = cb[j];
        }
        return;
    }
    finish(ra, &ca);
    finish(rb, &cb);
}

// Exact f32 re-score of row `row`'s candidates (indices are global: the
// host binds the one centroid chunk, c_base 0) and the uncertainty flag.
fn finish(row: u32, c: ptr<function, array<Best, 4>>) {
    let dp4 = p.dp4;
    var xx = 0.0;
    for (var t = 0u; t < dp4; t++) {
        let v = x[row * dp4 + t];
        xx += dot(v, v);
    }
    var best = Best(p.init, 0u);
    for (var j = 0u; j < CANDS; j++) {
        if (*c)[j].key == p.init {
            continue;
        }
        let ci = (*c)[j].idx - p.c_base;
        var acc = vec4<f32>(0.0);
        for (var t = 0u; t < dp4; t++) {
            acc += x[row * dp4 + t] * cen[ci * dp4 + t];
        }
        let k = bias[ci] + p.alpha * (acc.x + acc.y + acc.z + acc.w);
        if k < best.key || (k == best.key && (*c)[j].idx < best.idx) {
            best = Best(k, (*c)[j].idx);
        }
    }
    // Uncertain: the kept candidates' approximate keys lie so close that a
    // centroid that was not kept could be the exact best.
    let gap = (*c)[CANDS - 1u].key - (*c)[0].key;
    let unsure = gap <= 4.0 * (p.tol * sqrt(xx) + p.tol0);
    cand[row * CANDS] = best;
    cand[row * CANDS + 1u] = Best(0.0, select(0u, 1u, unsure));
}
