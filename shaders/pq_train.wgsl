// Product-quantiser training on the device: the lockstep k-means of
// `index/pq.rs`, iteration after iteration, without the host. Per
// iteration the host encodes three dispatches into one pass: `pq_assign`
// (pq_assign.wgsl: codes and distances of every row in every sub-space),
// `pq_check` here (one invocation per sub-space: labels compared with the
// previous iteration's, counts per centroid) and `pq_update` (one
// invocation per sub-space component: the new centroids). The host reads
// back once, at the end.
//
// A sub-space whose labels did not change is done (its update would give
// the same centroids again, a fixed point). One whose update would leave a
// centroid empty stops here ("stalled"): splitting it needs faiss's random
// generator, so the host makes that update and goes on alone. Both states
// record the iteration, and `prev` keeps the labels they stopped on.
//
// Sums run over the rows in row order, in f32, as the host's do, and are
// scaled by a host-made table of 1 / count (f32 division on GPUs need not
// be correctly rounded), so the centroids are the host's bit for bit.
// Loop trips per invocation: n ≤ 4096 rows (the host caps training rows),
// far below lavapipe's 65 535-iteration cut-off.

struct Params {
    n: u32,      // rows
    d: u32,      // floats per row
    dsub: u32,
    m: u32,
    iter: u32,   // this iteration, from 0
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const ACTIVE: u32 = 0u;
const DONE: u32 = 1u;
const STALLED: u32 = 2u;
const KSUB: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// pq_assign's output: (code, distance bits) per row and sub-space.
@group(0) @binding(2) var<storage, read> codes: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> prev: array<u32>;
// Per sub-space: (state, iteration it was set at).
@group(0) @binding(4) var<storage, read_write> state: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> counts: array<u32>;
// pq_assign's codebook layout for 16 centroids: [sub-space][component][16].
@group(0) @binding(6) var<storage, read_write> books: array<f32>;
// inv[c] = 1 / c, correctly rounded, for c = 0 ..= n.
@group(0) @binding(7) var<storage, read> inv: array<f32>;

@compute @workgroup_size(64)
fn pq_check(@builtin(global_invocation_id) gid: vec3<u32>) {
    let sq = gid.x;
    if sq >= p.m || state[sq].x != ACTIVE {
        return;
    }
    var count = array<u32, 16>();
    var changed = p.iter == 0u;
    for (var r = 0u; r < p.n; r++) {
        let at = r * p.m + sq;
        let c = codes[at].x;
        if c != prev[at] {
            changed = true;
        }
        prev[at] = c;
        count[c] += 1u;
    }
    if !changed {
        state[sq] = vec2<u32>(DONE, p.iter);
        return;
    }
    var empty = false;
    for (var c = 0u; c < KSUB; c++) {
        counts[sq * KSUB + c] = count[c];
        if count[c] == 0u {
            empty = true;
        }
    }
    if empty {
        state[sq] = vec2<u32>(STALLED, p.iter);
    }
}

@compute @workgroup_size(64)
fn pq_update(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let sq = t / p.dsub;
    let j = t % p.dsub;
    if sq >= p.m || state[sq].x != ACTIVE {
        return;
    }
    var sum = array<f32, 16>();
    let col = sq * p.dsub + j;
    for (var r = 0u; r < p.n; r++) {
        let c = prev[r * p.m + sq];
        sum[c] += x[r * p.d + col];
    }
    for (var c = 0u; c < KSUB; c++) {
        books[col * KSUB + c] = sum[c] * inv[counts[sq * KSUB + c]];
    }
}
