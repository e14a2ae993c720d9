// Nearest centroid per row, fused with the distance GEMM: no N×K matrix.
//
// Scores are "keys" to minimise: key = bias[j] + alpha · (x · c_j), with
// bias = ‖c‖², alpha = −2 for L2 (‖x‖² is added on the host) and
// bias = 0, alpha = −1 for inner product. Padding centroids carry
// bias = +inf so they never win.
//
// One dispatch covers every row of the chunk and the centroids
// [c_begin, c_end) of the bound centroid buffer; the host splits the centroid
// range over several dispatches so that no invocation loops more than a few
// thousand times (Mesa's lavapipe silently truncates loop nests after 65 535
// iterations). The running best per row lives in `best` between dispatches,
// which run in centroid order and replace only on a strictly smaller key, so
// ties go to the lowest centroid index.
//
// Layout: rows of x and centroids are padded with zeros to `dp4` vec4s, rows
// to a whole workgroup and centroids to a whole block, so no bounds checks
// are needed in the inner loops.
//
// This file holds the portable tiled kernel; `assign_subgroup.wgsl` is
// appended to it when the device has subgroup operations.

struct Params {
    dp4: u32,       // vec4s per row
    c_begin: u32,   // first centroid (local to the bound buffer), block aligned
    c_end: u32,     // one past the last centroid, block aligned
    c_base: u32,    // global index of the bound buffer's first centroid
    alpha: f32,
    first: u32,     // 1: first dispatch of the chunk, nothing in `best` yet
    init: f32,      // +inf, passed in because WGSL cannot spell it
    _pad: u32,
}

struct Best {
    key: f32,
    idx: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cen: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> best: array<Best>;

// Lowest key of four centroids j, j + s, j + 2s, j + 3s; the first on ties.
fn upd4(b: Best, keys: vec4<f32>, j: u32, s: u32) -> Best {
    var r = b;
    if keys.x < r.key { r = Best(keys.x, j); }
    if keys.y < r.key { r = Best(keys.y, j + s); }
    if keys.z < r.key { r = Best(keys.z, j + 2u * s); }
    if keys.w < r.key { r = Best(keys.w, j + 3u * s); }
    return r;
}

fn bias4(j: u32, s: u32) -> vec4<f32> {
    return vec4<f32>(bias[j], bias[j + s], bias[j + 2u * s], bias[j + 3u * s]);
}

// Where a dispatch starts from: nothing yet, or the earlier dispatches' best.
fn start(row: u32) -> Best {
    if p.first != 0u {
        return Best(p.init, 0u);
    }
    return best[row];
}

// ---------------------------------------------------------------------------
// Tiled kernel for real GPUs: a 16×16 workgroup computes a 64-row × 64-centroid
// tile, staging 64×16-float slices of both operands in workgroup memory
// (stored transposed, [k][row], so that neighbouring invocations read
// neighbouring vec4s). Each invocation holds a 4×4 register block: rows
// ty + 16i, centroids tx + 16j. Per-invocation bests over the centroid range
// are reduced across the 16 invocations of a row at the end.
// Rows per workgroup: 64; centroid block: 64; dp4 a multiple of 4.

var<workgroup> xs: array<vec4<f32>, 256>;
var<workgroup> cs: array<vec4<f32>, 256>;
var<workgroup> red_key: array<f32, 1024>;
var<workgroup> red_idx: array<u32, 1024>;

@compute @workgroup_size(16, 16)
fn assign_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tx = lid.x;
    let ty = lid.y;
    let dp4 = p.dp4;
    let row0 = wid.x * 64u;
    // This invocation's share of each slice load: one vec4 of each operand.
    let lr = li / 4u;
    let lk = li % 4u;

    var b0 = Best(p.init, 0u);
    var b1 = Best(p.init, 0u);
    var b2 = Best(p.init, 0u);
    var b3 = Best(p.init, 0u);
    for (var c0 = p.c_begin; c0 < p.c_end; c0 += 64u) {
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        for (var d0 = 0u; d0 < dp4; d0 += 4u) {
            xs[lk * 64u + lr] = x[(row0 + lr) * dp4 + d0 + lk];
            cs[lk * 64u + lr] = cen[(c0 + lr) * dp4 + d0 + lk];
            workgroupBarrier();
            for (var k = 0u; k < 256u; k += 64u) {
                let m = mat4x4<f32>(cs[k + tx], cs[k + tx + 16u], cs[k + tx + 32u], cs[k + tx + 48u]);
                a0 += xs[k + ty] * m;
                a1 += xs[k + ty + 16u] * m;
                a2 += xs[k + ty + 32u] * m;
                a3 += xs[k + ty + 48u] * m;
            }
            workgroupBarrier();
        }
        let bv = bias4(c0 + tx, 16u);
        let g = p.c_base + c0 + tx;
        b0 = upd4(b0, bv + p.alpha * a0, g, 16u);
        b1 = upd4(b1, bv + p.alpha * a1, g, 16u);
        b2 = upd4(b2, bv + p.alpha * a2, g, 16u);
        b3 = upd4(b3, bv + p.alpha * a3, g, 16u);
    }

    red_key[ty * 16u + tx] = b0.key;
    red_idx[ty * 16u + tx] = b0.idx;
    red_key[(ty + 16u) * 16u + tx] = b1.key;
    red_idx[(ty + 16u) * 16u + tx] = b1.idx;
    red_key[(ty + 32u) * 16u + tx] = b2.key;
    red_idx[(ty + 32u) * 16u + tx] = b2.idx;
    red_key[(ty + 48u) * 16u + tx] = b3.key;
    red_idx[(ty + 48u) * 16u + tx] = b3.idx;
    workgroupBarrier();
    if li < 64u {
        var b = start(row0 + li);
        // Earlier dispatches saw lower centroid indices: replace only when
        // strictly better. Among this dispatch's 16 partial bests, the lowest
        // index wins ties.
        var m = Best(red_key[li * 16u], red_idx[li * 16u]);
        for (var t = 1u; t < 16u; t++) {
            let k = red_key[li * 16u + t];
            let i = red_idx[li * 16u + t];
            if k < m.key || (k == m.key && i < m.idx) {
                m = Best(k, i);
            }
        }
        if p.first != 0u || m.key < b.key {
            b = m;
        }
        best[row0 + li] = b;
    }
}
