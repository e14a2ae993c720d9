// List scans (knn, search_flat_lists, search_pq_lists, refine): score the
// entries of list segments against a query, keep the best k of each
// segment, then merge per-query candidate lists down to k.
//
// Every workgroup handles one work item: (query, a segment of at most 1024
// entries, where to write its k best). The segment's scores go to workgroup
// memory with their tie-break values; a bitonic selection there leaves the
// best k in order at the front (see `select_top`), and they are written out. A merge
// item selects from up to 1024 candidates of one query the same way. The host runs
// merge passes until one list of k remains per query, so no invocation ever
// loops over a whole list (lavapipe cuts loop nests at 65 535 iterations)
// and no query × entries score matrix exists.
//
// Candidates are (key, tie) pairs, smaller first: key = squared L2 distance,
// or the negated inner product; tie = the host's tie-break value (the id, or
// its complement where higher ids win ties). Empty slots have key +inf and
// tie 0xffffffff.

struct Params {
    items_base: u32, // first item of this dispatch in `items`
    n_items: u32,
    groups_x: u32,   // workgroups along x (item = x + y · groups_x)
    k: u32,          // candidates written per item
    dp4: u32,        // flat: vec4s per vector
    metric: u32,     // 0: L2, 1: inner product
    m: u32,          // PQ: sub-quantizers
    bbs: u32,        // PQ: entries per block
    block_bytes: u32,// PQ: bytes per block
    lut_words: u32,  // PQ: u32 words of packed table per query
    inf: f32,
    _pad: u32,
}

struct Item {
    q: vec4<u32>,   // query rows in the bound query buffer (flat: up to 4; others: .x)
    out: vec4<u32>, // first output candidate of each query
    data: u32,      // flat: first vec4 of the transposed segment; PQ: first u32 word of the segment; merge: first candidate
    ids: u32,       // first tie value in `ids`
    count: u32,     // entries (or candidates)
    nq: u32,        // flat: queries in `q` (1 to 4)
    stride: u32,    // flat: entries the transposed segment is padded to (multiple of 64)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> items: array<Item>;
// Flat: query rows (f32 bits, dp4 vec4s each); PQ: 8-bit tables, 4 per word.
@group(0) @binding(2) var<storage, read> qry: array<vec4<u32>>;
// Flat: vectors (f32 bits, dp4 vec4s each); PQ: packed fast-scan blocks.
@group(0) @binding(3) var<storage, read> data: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
@group(0) @binding(5) var<storage, read> cand_in: array<vec2<u32>>;
@group(0) @binding(6) var<storage, read_write> cand_out: array<vec2<u32>>;

const WG: u32 = 64u;
const SEG: u32 = 1024u;

var<workgroup> sk: array<f32, 1024>;
var<workgroup> st: array<u32, 1024>;
var<workgroup> lut: array<u32, 4096>;
var<workgroup> wg_n: u32;

fn item_index(wid: vec3<u32>) -> u32 {
    return wid.x + wid.y * p.groups_x;
}

// Power of two ≥ max(count, k): the part of `sk` selection runs over.
fn sort_size(count: u32) -> u32 {
    var n = 1u;
    while n < max(count, p.k) {
        n = n << 1u;
    }
    return n;
}

fn better(ka: f32, ta: u32, kb: f32, tb: u32) -> bool {
    return ka < kb || (ka == kb && ta < tb);
}

fn cmpx(i: u32, l: u32, up: bool) {
    let ki = sk[i];
    let ti = st[i];
    let kl = sk[l];
    let tl = st[l];
    if better(kl, tl, ki, ti) == up {
        sk[i] = kl;
        st[i] = tl;
        sk[l] = ki;
        st[l] = ti;
    }
}

// The best kp (k rounded up to a power of two) of sk/st[0..n), sorted into
// sk/st[0..kp), without sorting all n: bitonic-sort runs of kp (alternately
// ascending and descending), then halve the runs until one is left: the
// element-wise better of an ascending and a descending run is a bitonic
// sequence holding the pair's best kp, which log2(kp) steps sort again.
// n is a power of two ≥ kp, the same for the whole workgroup.
fn select_top(n: u32, t: u32) {
    select_groups(n, 1u, t);
}

// `select_top` on `groups` independent arrays of n, back to back: group g's
// best kp end up sorted at g · n.
fn select_groups(n: u32, groups: u32, t: u32) {
    var kp = 1u;
    while kp < p.k {
        kp = kp << 1u;
    }
    workgroupBarrier();
    let all = n * groups;
    for (var size = 2u; size <= kp; size = size << 1u) {
        for (var j = size >> 1u; j > 0u; j = j >> 1u) {
            for (var h = t; h < all / 2u; h += WG) {
                let i = (h / j) * 2u * j + (h % j);
                cmpx(i, i + j, (i & size) == 0u);
            }
            workgroupBarrier();
        }
    }
    var stride = kp;
    var runs = all / kp;
    let half = max(kp / 2u, 1u);
    while runs > groups {
        for (var h = t; h < (runs / 2u) * kp; h += WG) {
            let a = (h / kp) * 2u * stride + h % kp;
            let b = a + stride;
            if better(sk[b], st[b], sk[a], st[a]) {
                sk[a] = sk[b];
                st[a] = st[b];
            }
        }
        workgroupBarrier();
        runs = runs / 2u;
        stride = stride * 2u;
        for (var j = kp >> 1u; j > 0u; j = j >> 1u) {
            for (var h = t; h < runs * half; h += WG) {
                let r = h / half;
                let w = h % half;
                let i = r * stride + (w / j) * 2u * j + (w % j);
                cmpx(i, i + j, (r & 1u) == 0u);
            }
            workgroupBarrier();
        }
    }
    // Every group's run ascending (odd runs are descending, i.e. bitonic).
    if groups > 1u {
        for (var j = kp >> 1u; j > 0u; j = j >> 1u) {
            for (var h = t; h < groups * half; h += WG) {
                let r = h / half;
                let w = h % half;
                let i = r * stride + (w / j) * 2u * j + (w % j);
                cmpx(i, i + j, true);
            }
            workgroupBarrier();
        }
    }
}

fn write_top(out: u32, t: u32) {
    write_group(out, 0u, t);
}

fn write_group(out: u32, at: u32, t: u32) {
    for (var r = t; r < p.k; r += WG) {
        cand_out[out + r] = vec2<u32>(bitcast<u32>(sk[at + r]), st[at + r]);
    }
}

// The workgroup's item count, as a uniform value for the loop bounds around
// barriers.
fn uniform_count(it: Item, t: u32) -> u32 {
    if t == 0u {
        wg_n = it.count;
    }
    return workgroupUniformLoad(&wg_n);
}

fn f4(v: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(v);
}

fn flat_key(acc: f32) -> f32 {
    if p.metric == 0u {
        return acc;
    }
    return -acc;
}

// Flat scan: up to 4 queries × 256 entries per workgroup. Each invocation
// holds a 4 × 4 register block (entries t + 64i, queries j), so a vector load
// serves four queries and a query load four entries.
@compute @workgroup_size(64)
fn scan_flat(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let w = item_index(wid);
    if w >= p.n_items {
        return;
    }
    let it = items[p.items_base + w];
    let count = uniform_count(it, t);
    let n = sort_size(count);
    let dp4 = p.dp4;
    let nq = it.nq;
    let qb = vec4<u32>(it.q.x, it.q[min(1u, nq - 1u)], it.q[min(2u, nq - 1u)], it.q[min(3u, nq - 1u)]) * dp4;
    // Segment vectors are stored transposed: vec4 c of entry e at
    // data + c · L + e. Entries past L repeat entry t (scored, then dropped).
    let L = it.stride;
    let r0 = it.data + t;
    let r1 = it.data + select(t, t + WG, t + WG < L);
    let r2 = it.data + select(t, t + 2u * WG, t + 2u * WG < L);
    let r3 = it.data + select(t, t + 3u * WG, t + 3u * WG < L);
    // a<entry><query>
    var a00 = vec4<f32>(0.0); var a01 = vec4<f32>(0.0); var a02 = vec4<f32>(0.0); var a03 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0); var a12 = vec4<f32>(0.0); var a13 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0); var a21 = vec4<f32>(0.0); var a22 = vec4<f32>(0.0); var a23 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0); var a31 = vec4<f32>(0.0); var a32 = vec4<f32>(0.0); var a33 = vec4<f32>(0.0);
    if p.metric == 0u {
        for (var c = 0u; c < dp4; c++) {
            let q0 = f4(qry[qb.x + c]);
            let q1 = f4(qry[qb.y + c]);
            let q2 = f4(qry[qb.z + c]);
            let q3 = f4(qry[qb.w + c]);
            let v0 = f4(data[r0 + c * L]);
            let v1 = f4(data[r1 + c * L]);
            let v2 = f4(data[r2 + c * L]);
            let v3 = f4(data[r3 + c * L]);
            var e = v0 - q0; a00 += e * e; e = v0 - q1; a01 += e * e; e = v0 - q2; a02 += e * e; e = v0 - q3; a03 += e * e;
            e = v1 - q0; a10 += e * e; e = v1 - q1; a11 += e * e; e = v1 - q2; a12 += e * e; e = v1 - q3; a13 += e * e;
            e = v2 - q0; a20 += e * e; e = v2 - q1; a21 += e * e; e = v2 - q2; a22 += e * e; e = v2 - q3; a23 += e * e;
            e = v3 - q0; a30 += e * e; e = v3 - q1; a31 += e * e; e = v3 - q2; a32 += e * e; e = v3 - q3; a33 += e * e;
        }
    } else {
        for (var c = 0u; c < dp4; c++) {
            let q0 = f4(qry[qb.x + c]);
            let q1 = f4(qry[qb.y + c]);
            let q2 = f4(qry[qb.z + c]);
            let q3 = f4(qry[qb.w + c]);
            let v0 = f4(data[r0 + c * L]);
            let v1 = f4(data[r1 + c * L]);
            let v2 = f4(data[r2 + c * L]);
            let v3 = f4(data[r3 + c * L]);
            a00 += v0 * q0; a01 += v0 * q1; a02 += v0 * q2; a03 += v0 * q3;
            a10 += v1 * q0; a11 += v1 * q1; a12 += v1 * q2; a13 += v1 * q3;
            a20 += v2 * q0; a21 += v2 * q1; a22 += v2 * q2; a23 += v2 * q3;
            a30 += v3 * q0; a31 += v3 * q1; a32 += v3 * q2; a33 += v3 * q3;
        }
    }
    let one = vec4<f32>(1.0);
    let acc = array<vec4<f32>, 4>(
        vec4<f32>(dot(a00, one), dot(a01, one), dot(a02, one), dot(a03, one)),
        vec4<f32>(dot(a10, one), dot(a11, one), dot(a12, one), dot(a13, one)),
        vec4<f32>(dot(a20, one), dot(a21, one), dot(a22, one), dot(a23, one)),
        vec4<f32>(dot(a30, one), dot(a31, one), dot(a32, one), dot(a33, one)),
    );
    for (var i = 0u; i < 4u; i++) {
        let e = t + i * WG;
        if e < n {
            let live = e < count;
            var tie = 0xffffffffu;
            if live {
                tie = ids[it.ids + e];
            }
            for (var j = 0u; j < 4u; j++) {
                sk[j * n + e] = select(p.inf, flat_key(acc[i][j]), live);
                st[j * n + e] = tie;
            }
        }
    }
    select_groups(n, 4u, t);
    for (var j = 0u; j < nq; j++) {
        write_group(it.out[j], j * n, t);
    }
}

fn code_byte(byte: u32) -> u32 {
    let w = byte >> 2u;
    return (data[w >> 2u][w & 3u] >> ((byte & 3u) * 8u)) & 0xffu;
}

// Entry c of sub-quantizer sq in the table starting at word `base`.
fn lut_entry(base: u32, sq: u32, c: u32) -> u32 {
    let i = sq * 16u + c;
    return (lut[base + (i >> 2u)] >> ((i & 3u) * 8u)) & 0xffu;
}

// PQ fast-scan: up to 4 queries (their tables in workgroup memory) × 256
// entries per workgroup; each code byte read serves all of them.
@compute @workgroup_size(64)
fn scan_pq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let w = item_index(wid);
    if w >= p.n_items {
        return;
    }
    let it = items[p.items_base + w];
    let count = uniform_count(it, t);
    let n = sort_size(count);
    let lw = p.lut_words;
    let nq = it.nq;
    for (var g = 0u; g < nq; g++) {
        let lb = it.q[g] * lw;
        for (var i = t; i < lw; i += WG) {
            let at = lb + i;
            lut[g * lw + i] = qry[at >> 2u][at & 3u];
        }
    }
    workgroupBarrier();
    // Table of query slot j (slots past nq reuse the last query's).
    let tb = vec4<u32>(0u, min(1u, nq - 1u), min(2u, nq - 1u), min(3u, nq - 1u)) * lw;
    let seg_byte = it.data * 4u;
    let pairs = (p.m + 1u) / 2u;
    for (var i = 0u; i < 4u; i++) {
        let e = t + i * WG;
        if e >= n {
            continue;
        }
        var acc = vec4<u32>(0u);
        if e < count {
            let blk = e / p.bbs;
            let inb = e % p.bbs;
            let u = inb % 32u;
            let v = u % 16u;
            // faiss's order inside a 16-byte half: entries 0, 8, 1, 9, ...
            var slot = 2u * v;
            if v >= 8u {
                slot = 2u * (v - 8u) + 1u;
            }
            let shift = select(0u, 4u, u >= 16u);
            let b0 = seg_byte + blk * p.block_bytes + (inb / 32u) * 32u + slot;
            for (var pp = 0u; pp < pairs; pp++) {
                let at = b0 + pp * p.bbs;
                let c0 = (code_byte(at) >> shift) & 15u;
                let s0 = 2u * pp;
                acc += vec4<u32>(lut_entry(tb.x, s0, c0), lut_entry(tb.y, s0, c0), lut_entry(tb.z, s0, c0), lut_entry(tb.w, s0, c0));
                if s0 + 1u < p.m {
                    let c1 = (code_byte(at + 16u) >> shift) & 15u;
                    let s1 = s0 + 1u;
                    acc += vec4<u32>(lut_entry(tb.x, s1, c1), lut_entry(tb.y, s1, c1), lut_entry(tb.z, s1, c1), lut_entry(tb.w, s1, c1));
                }
            }
        }
        let live = e < count;
        var tie = 0xffffffffu;
        if live {
            tie = ids[it.ids + e];
        }
        for (var j = 0u; j < 4u; j++) {
            sk[j * n + e] = select(p.inf, flat_key(f32(acc[j])), live);
            st[j * n + e] = tie;
        }
    }
    select_groups(n, 4u, t);
    for (var j = 0u; j < nq; j++) {
        write_group(it.out[j], j * n, t);
    }
}

@compute @workgroup_size(64)
fn merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let w = item_index(wid);
    if w >= p.n_items {
        return;
    }
    let it = items[p.items_base + w];
    let count = uniform_count(it, t);
    let n = sort_size(count);
    for (var e = t; e < n; e += WG) {
        if e < count {
            let c = cand_in[it.data + e];
            sk[e] = bitcast<f32>(c.x);
            st[e] = c.y;
        } else {
            sk[e] = p.inf;
            st[e] = 0xffffffffu;
        }
    }
    select_top(n, t);
    write_top(it.out.x, t);
}
