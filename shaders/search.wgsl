// Index search: score the entries of list segments against a query, keep the
// best k of each segment, then merge per-query candidate lists down to k.
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
    q: u32,      // query row in the bound query buffer
    data: u32,   // flat: first vector (row); PQ: first u32 word of the segment; merge: first candidate
    ids: u32,    // first tie value in `ids`
    count: u32,  // entries (or candidates)
    out: u32,    // first output candidate
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
    var kp = 1u;
    while kp < p.k {
        kp = kp << 1u;
    }
    workgroupBarrier();
    for (var size = 2u; size <= kp; size = size << 1u) {
        for (var j = size >> 1u; j > 0u; j = j >> 1u) {
            for (var h = t; h < n / 2u; h += WG) {
                let i = (h / j) * 2u * j + (h % j);
                cmpx(i, i + j, (i & size) == 0u);
            }
            workgroupBarrier();
        }
    }
    var stride = kp;
    var runs = n / kp;
    let half = max(kp / 2u, 1u);
    while runs > 1u {
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
}

fn write_top(out: u32, t: u32) {
    for (var r = t; r < p.k; r += WG) {
        cand_out[out + r] = vec2<u32>(bitcast<u32>(sk[r]), st[r]);
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
    let qb = it.q * dp4;
    let last = it.data + max(count, 1u) - 1u;
    // Four entries per invocation and pass, sharing each query load.
    for (var e0 = 0u; e0 < n; e0 += 4u * WG) {
        let e = e0 + t;
        let r0 = min(it.data + e, last) * dp4;
        let r1 = min(it.data + e + WG, last) * dp4;
        let r2 = min(it.data + e + 2u * WG, last) * dp4;
        let r3 = min(it.data + e + 3u * WG, last) * dp4;
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        if p.metric == 0u {
            for (var c = 0u; c < dp4; c++) {
                let qv = f4(qry[qb + c]);
                let d0 = qv - f4(data[r0 + c]);
                let d1 = qv - f4(data[r1 + c]);
                let d2 = qv - f4(data[r2 + c]);
                let d3 = qv - f4(data[r3 + c]);
                a0 += d0 * d0;
                a1 += d1 * d1;
                a2 += d2 * d2;
                a3 += d3 * d3;
            }
        } else {
            for (var c = 0u; c < dp4; c++) {
                let qv = f4(qry[qb + c]);
                a0 += qv * f4(data[r0 + c]);
                a1 += qv * f4(data[r1 + c]);
                a2 += qv * f4(data[r2 + c]);
                a3 += qv * f4(data[r3 + c]);
            }
        }
        let acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
        for (var i = 0u; i < 4u; i++) {
            let ei = e + i * WG;
            if ei < n {
                if ei < count {
                    let a = acc[i];
                    sk[ei] = flat_key(a.x + a.y + a.z + a.w);
                    st[ei] = ids[it.ids + ei];
                } else {
                    sk[ei] = p.inf;
                    st[ei] = 0xffffffffu;
                }
            }
        }
    }
    select_top(n, t);
    write_top(it.out, t);
}

fn code_byte(byte: u32) -> u32 {
    let w = byte >> 2u;
    return (data[w >> 2u][w & 3u] >> ((byte & 3u) * 8u)) & 0xffu;
}

fn lut_entry(sq: u32, c: u32) -> u32 {
    let i = sq * 16u + c;
    return (lut[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

@compute @workgroup_size(64)
fn scan_pq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let w = item_index(wid);
    if w >= p.n_items {
        return;
    }
    let it = items[p.items_base + w];
    let count = uniform_count(it, t);
    let n = sort_size(count);
    let lb = it.q * p.lut_words;
    for (var i = t; i < p.lut_words; i += WG) {
        let g = lb + i;
        lut[i] = qry[g >> 2u][g & 3u];
    }
    workgroupBarrier();
    let seg_byte = it.data * 4u;
    let pairs = (p.m + 1u) / 2u;
    for (var e = t; e < n; e += WG) {
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
            var acc = 0u;
            for (var pp = 0u; pp < pairs; pp++) {
                let at = b0 + pp * p.bbs;
                acc += lut_entry(2u * pp, (code_byte(at) >> shift) & 15u);
                if 2u * pp + 1u < p.m {
                    acc += lut_entry(2u * pp + 1u, (code_byte(at + 16u) >> shift) & 15u);
                }
            }
            sk[e] = flat_key(f32(acc));
            st[e] = ids[it.ids + e];
        } else {
            sk[e] = p.inf;
            st[e] = 0xffffffffu;
        }
    }
    select_top(n, t);
    write_top(it.out, t);
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
    write_top(it.out, t);
}
