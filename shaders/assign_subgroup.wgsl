// Appended to assign.wgsl (its declarations and helpers) when the device has
// subgroup operations. Written for CPU adapters (lavapipe): there a subgroup
// is one SIMD register of 8 invocations, a load whose address differs per
// invocation is a scalar gather, and subgroupBroadcast is a cheap shuffle.
//
// Each invocation owns 4 rows. Per 16-centroid block the 8 lanes of a
// subgroup load the centroids cooperatively (lane l loads centroids l and
// 8 + l, one vec4 each per step) and broadcast them, so a step costs 6 vec4
// gathers (4 of x, 2 of centroids) for 4 × 16 × 4 = 256 FMAs; without
// broadcasting it would be 20. The 4 × 16 dot products stay in registers.
// Needs subgroups of at least 8 invocations (lanes 0..7 are read).
// Rows per workgroup: 64 × 4 = 256; centroid block: 16.

@compute @workgroup_size(64)
fn assign_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let r0 = gid.x * 4u;
    let dp4 = p.dp4;
    let xb = r0 * dp4;
    let l8 = lane & 7u;

    var b0 = start(r0);
    var b1 = start(r0 + 1u);
    var b2 = start(r0 + 2u);
    var b3 = start(r0 + 3u);
    for (var j = p.c_begin; j < p.c_end; j += 16u) {
        // s<row><q>: row r against centroids j + 4q .. j + 4q + 3.
        var s00 = vec4<f32>(0.0);
        var s01 = vec4<f32>(0.0);
        var s02 = vec4<f32>(0.0);
        var s03 = vec4<f32>(0.0);
        var s10 = vec4<f32>(0.0);
        var s11 = vec4<f32>(0.0);
        var s12 = vec4<f32>(0.0);
        var s13 = vec4<f32>(0.0);
        var s20 = vec4<f32>(0.0);
        var s21 = vec4<f32>(0.0);
        var s22 = vec4<f32>(0.0);
        var s23 = vec4<f32>(0.0);
        var s30 = vec4<f32>(0.0);
        var s31 = vec4<f32>(0.0);
        var s32 = vec4<f32>(0.0);
        var s33 = vec4<f32>(0.0);
        let ca = (j + l8) * dp4;
        let cb = ca + 8u * dp4;
        for (var t = 0u; t < dp4; t++) {
            let va = cen[ca + t];
            let vb = cen[cb + t];
            let m0 = mat4x4<f32>(subgroupBroadcast(va, 0u), subgroupBroadcast(va, 1u), subgroupBroadcast(va, 2u), subgroupBroadcast(va, 3u));
            let m1 = mat4x4<f32>(subgroupBroadcast(va, 4u), subgroupBroadcast(va, 5u), subgroupBroadcast(va, 6u), subgroupBroadcast(va, 7u));
            let m2 = mat4x4<f32>(subgroupBroadcast(vb, 0u), subgroupBroadcast(vb, 1u), subgroupBroadcast(vb, 2u), subgroupBroadcast(vb, 3u));
            let m3 = mat4x4<f32>(subgroupBroadcast(vb, 4u), subgroupBroadcast(vb, 5u), subgroupBroadcast(vb, 6u), subgroupBroadcast(vb, 7u));
            let x0 = x[xb + t];
            let x1 = x[xb + dp4 + t];
            let x2 = x[xb + 2u * dp4 + t];
            let x3 = x[xb + 3u * dp4 + t];
            s00 += x0 * m0;
            s01 += x0 * m1;
            s02 += x0 * m2;
            s03 += x0 * m3;
            s10 += x1 * m0;
            s11 += x1 * m1;
            s12 += x1 * m2;
            s13 += x1 * m3;
            s20 += x2 * m0;
            s21 += x2 * m1;
            s22 += x2 * m2;
            s23 += x2 * m3;
            s30 += x3 * m0;
            s31 += x3 * m1;
            s32 += x3 * m2;
            s33 += x3 * m3;
        }
        let a = p.alpha;
        let e0 = bias4(j, 1u);
        let e1 = bias4(j + 4u, 1u);
        let e2 = bias4(j + 8u, 1u);
        let e3 = bias4(j + 12u, 1u);
        let g = p.c_base + j;
        b0 = upd4(upd4(upd4(upd4(b0, e0 + a * s00, g, 1u), e1 + a * s01, g + 4u, 1u), e2 + a * s02, g + 8u, 1u), e3 + a * s03, g + 12u, 1u);
        b1 = upd4(upd4(upd4(upd4(b1, e0 + a * s10, g, 1u), e1 + a * s11, g + 4u, 1u), e2 + a * s12, g + 8u, 1u), e3 + a * s13, g + 12u, 1u);
        b2 = upd4(upd4(upd4(upd4(b2, e0 + a * s20, g, 1u), e1 + a * s21, g + 4u, 1u), e2 + a * s22, g + 8u, 1u), e3 + a * s23, g + 12u, 1u);
        b3 = upd4(upd4(upd4(upd4(b3, e0 + a * s30, g, 1u), e1 + a * s31, g + 4u, 1u), e2 + a * s32, g + 8u, 1u), e3 + a * s33, g + 12u, 1u);
    }
    best[r0] = b0;
    best[r0 + 1u] = b1;
    best[r0 + 2u] = b2;
    best[r0 + 3u] = b3;
}
