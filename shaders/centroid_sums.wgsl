// Per-cluster sums of rows, without atomics.
//
// The host counting-sorts the chunk's row indices by label (`perm`) and cuts
// each label's run into segments of at most a few thousand rows (Mesa's
// lavapipe silently truncates loops after 65 535 iterations). One invocation
// sums one vec4 column of one segment; the host adds the segments of a label.

struct Params {
    dp4: u32,        // vec4s per row
    seg_count: u32,  // segments in this chunk
    y_size: u32,     // segments per grid z-layer (grid y size)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
// (start in perm, length) per segment.
@group(0) @binding(3) var<storage, read> segs: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn centroid_sums(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let s = gid.z * p.y_size + gid.y;
    if t >= p.dp4 || s >= p.seg_count {
        return;
    }
    let seg = segs[s];
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < seg.y; i++) {
        acc += x[perm[seg.x + i] * p.dp4 + t];
    }
    out[s * p.dp4 + t] = acc;
}
