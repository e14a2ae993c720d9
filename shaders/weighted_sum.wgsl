// The weighted_sum primitive (the arithmetic of α-query expansion) for one
// batch of rows: for row r, gather its m neighbour rows by id, weight each
// by max(q·n, 0)^alpha (the "nd,nmd->nm" einsum), sum the weighted rows and
// L2-normalise (eps 1e-9).
//
// One workgroup of 64 invocations per query row; each invocation owns the
// vec4 columns c ≡ lid (mod 64), and dot products are reduced through
// workgroup memory. Every loop runs at most m·dp4/64 + m·6 times, far from
// lavapipe's 65 535-iteration cut-off.

struct Params {
    dp4: u32,      // vec4s per row (zero padded)
    m: u32,        // neighbours per row (at most 64)
    nq: u32,       // query rows in this dispatch
    alpha: f32,
    groups_x: u32, // workgroups along x (rows = x + y * groups_x)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> db: array<vec4<f32>>;
// Row of `db` for neighbour j of query r at r * m + j; -1 = none.
@group(0) @binding(3) var<storage, read> ids: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

var<workgroup> red: array<f32, 64>;
var<workgroup> w: array<f32, 64>;

fn reduce(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var h = 32u; h > 0u; h = h >> 1u) {
        if t < h {
            red[t] = red[t] + red[t + h];
        }
        workgroupBarrier();
    }
    let s = red[0];
    workgroupBarrier();
    return s;
}

@compute @workgroup_size(64)
fn weighted_sum(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.x;
    let r = wid.x + wid.y * p.groups_x;
    // No early return: every invocation must reach every barrier.
    let live = r < p.nq;
    let qr = min(r, p.nq - 1u);

    for (var j = 0u; j < p.m; j = j + 1u) {
        let id = ids[qr * p.m + j];
        var s = 0.0;
        if live && id >= 0 {
            for (var c = t; c < p.dp4; c = c + 64u) {
                s = s + dot(q[qr * p.dp4 + c], db[u32(id) * p.dp4 + c]);
            }
        }
        let sim = reduce(t, s);
        if t == 0u {
            var wt = 0.0;
            if id >= 0 {
                let sc = max(sim, 0.0);
                if sc > 0.0 {
                    wt = pow(sc, p.alpha);
                } else if p.alpha == 0.0 {
                    wt = 1.0; // 0^0 = 1, as powf gives on the CPU
                }
            }
            w[j] = wt;
        }
        workgroupBarrier();
    }

    var nrm = 0.0;
    for (var c = t; c < p.dp4; c = c + 64u) {
        var y = vec4<f32>(0.0);
        for (var j = 0u; j < p.m; j = j + 1u) {
            let id = ids[qr * p.m + j];
            if id >= 0 && w[j] != 0.0 {
                y = y + w[j] * db[u32(id) * p.dp4 + c];
            }
        }
        if live {
            out[qr * p.dp4 + c] = y;
        }
        nrm = nrm + dot(y, y);
    }
    let inv = 1.0 / max(sqrt(reduce(t, nrm)), 1e-9);
    if live {
        for (var c = t; c < p.dp4; c = c + 64u) {
            out[qr * p.dp4 + c] = out[qr * p.dp4 + c] * inv;
        }
    }
}
