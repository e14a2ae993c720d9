// Product-quantiser assignment: for every row and every sub-space, the
// nearest of that sub-space's sub-centroids (squared L2, ties to the lower
// index) and its distance. All M sub-spaces in one dispatch: workgroup
// (x, y) covers rows 64x .. 64x + 63 of sub-space y, so the whole workgroup
// reads the same codebook entries (uniform loads) while each invocation
// streams its own sub-vector once.
//
// Codebooks are stored in blocks of 16 centroids, transposed so that one
// sub-vector component of 16 centroids is four consecutive vec4s:
// books[((sq · blocks + b) · dsub + j) · 4 + q] = component j of centroids
// 16b + 4q .. 16b + 4q + 3. Centroids past `ksub` are padding and never win.
// Loop trips per invocation: blocks · dsub (≤ 16 · dsub), far below lavapipe's
// 65 535-iteration cut-off for any sub-space the host accepts.

struct Params {
    n: u32,      // rows in this chunk
    d: u32,      // floats per row
    dsub: u32,
    ksub: u32,   // real centroids per sub-space
    blocks: u32, // 16-centroid blocks per sub-space
    m: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> books: array<vec4<f32>>;
// (code, distance bits) per row and sub-space, row-major.
@group(0) @binding(3) var<storage, read_write> out: array<vec2<u32>>;

@compute @workgroup_size(64)
fn pq_assign(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x * 64u + lid.x;
    let sq = wid.y;
    if row >= p.n {
        return;
    }
    let xb = row * p.d + sq * p.dsub;
    var best = 0u;
    var best_d = 0.0;
    var have = false;
    for (var b = 0u; b < p.blocks; b++) {
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        let cb = (sq * p.blocks + b) * p.dsub * 4u;
        for (var j = 0u; j < p.dsub; j++) {
            let xv = vec4<f32>(x[xb + j]);
            let t0 = xv - books[cb + j * 4u];
            let t1 = xv - books[cb + j * 4u + 1u];
            let t2 = xv - books[cb + j * 4u + 2u];
            let t3 = xv - books[cb + j * 4u + 3u];
            a0 += t0 * t0;
            a1 += t1 * t1;
            a2 += t2 * t2;
            a3 += t3 * t3;
        }
        let c0 = b * 16u;
        let live = min(p.ksub - c0, 16u);
        var dist = array<f32, 16>(
            a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w,
            a2.x, a2.y, a2.z, a2.w, a3.x, a3.y, a3.z, a3.w,
        );
        for (var t = 0u; t < live; t++) {
            if !have || dist[t] < best_d {
                best = c0 + t;
                best_d = dist[t];
                have = true;
            }
        }
    }
    out[row * p.m + sq] = vec2<u32>(best, bitcast<u32>(best_d));
}
