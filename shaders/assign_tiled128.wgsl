// Appended to assign.wgsl (its declarations and helpers): the large-tile
// kernel for discrete GPUs.
//
// A 16×16 workgroup computes a 128-row × 128-centroid tile. Each invocation
// holds an 8×8 register block: rows ty + 16i, centroids tx + 16j (i, j < 8),
// as 16 vec4 accumulators. The operands are staged in workgroup memory in
// slices of 8 floats (two vec4s) per row, stored transposed ([vec4][row]) so
// that neighbouring invocations read neighbouring vec4s, and double
// buffered: while the workgroup multiplies slice s out of one buffer, every
// invocation already holds its share of slice s + 1 in registers (loaded
// before the arithmetic, so the global-memory latency hides behind it) and
// stores it into the other buffer afterwards; one barrier per slice.
// A slice step costs each invocation 16 vec4 reads of workgroup memory for
// 256 FMAs (4 per float read, twice the 64×64 kernel's ratio).
//
// Workgroup memory: 2 buffers × (x, centroids) × 256 vec4 = 16 KiB, the
// WebGPU minimum; the same array holds the final per-row reduction.
// Rows per workgroup: 128; centroid block: 128; dp4 a multiple of 2.
// Loop trips per centroid block: dp4 / 2 + 1, counted by the host against
// lavapipe's loop limit like every kernel's. (Mesa 22.3 was not seen to cut
// loops that hold a barrier, at 66 000 trips; the subgroup kernel's loops,
// which hold none, are cut, and tests/assign.rs catches that.)

var<workgroup> tiles: array<vec4<f32>, 1024>;

// One slice step: the 8×8 block's dot products over one vec4 of depth.
// `xb` indexes row ty's vec4 of this step, `cb` centroid tx's.
fn step128(xb: u32, cb: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    let m0 = mat4x4<f32>(tiles[cb], tiles[cb + 16u], tiles[cb + 32u], tiles[cb + 48u]);
    let m1 = mat4x4<f32>(tiles[cb + 64u], tiles[cb + 80u], tiles[cb + 96u], tiles[cb + 112u]);
    let r0 = tiles[xb];
    let r1 = tiles[xb + 16u];
    let r2 = tiles[xb + 32u];
    let r3 = tiles[xb + 48u];
    let r4 = tiles[xb + 64u];
    let r5 = tiles[xb + 80u];
    let r6 = tiles[xb + 96u];
    let r7 = tiles[xb + 112u];
    (*acc)[0] += r0 * m0;
    (*acc)[1] += r0 * m1;
    (*acc)[2] += r1 * m0;
    (*acc)[3] += r1 * m1;
    (*acc)[4] += r2 * m0;
    (*acc)[5] += r2 * m1;
    (*acc)[6] += r3 * m0;
    (*acc)[7] += r3 * m1;
    (*acc)[8] += r4 * m0;
    (*acc)[9] += r4 * m1;
    (*acc)[10] += r5 * m0;
    (*acc)[11] += r5 * m1;
    (*acc)[12] += r6 * m0;
    (*acc)[13] += r6 * m1;
    (*acc)[14] += r7 * m0;
    (*acc)[15] += r7 * m1;
}

// Partial best `b` of invocation column `tx` into the reduction slot `at`.
fn park(at: u32, tx: u32, b: Best) {
    let idx = bitcast<f32>(b.idx);
    if (tx & 1u) == 0u {
        tiles[at].x = b.key;
        tiles[at].y = idx;
    } else {
        tiles[at].z = b.key;
        tiles[at].w = idx;
    }
}

@compute @workgroup_size(16, 16)
fn assign_tiled128(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tx = lid.x;
    let ty = lid.y;
    let dp4 = p.dp4;
    let row0 = wid.x * 128u;
    // This invocation's share of each slice: vec4 `ls` of row/centroid `lr`,
    // stored at ls·128 + lr of its operand's half of a buffer.
    let lr = li / 2u;
    let ls = li % 2u;
    let slot = ls * 128u + lr;
    let xg = (row0 + lr) * dp4 + ls;

    // Constant indices only (loops below are written out), so that the
    // arrays stay in registers.
    var bests = array<Best, 8>(
        Best(p.init, 0u), Best(p.init, 0u), Best(p.init, 0u), Best(p.init, 0u),
        Best(p.init, 0u), Best(p.init, 0u), Best(p.init, 0u), Best(p.init, 0u),
    );
    for (var c0 = p.c_begin; c0 < p.c_end; c0 += 128u) {
        let cg = (c0 + lr) * dp4 + ls;
        var acc: array<vec4<f32>, 16>; // zero-initialised
        // Buffer b: x at b·512, centroids at b·512 + 256.
        tiles[slot] = x[xg];
        tiles[256u + slot] = cen[cg];
        workgroupBarrier();
        var buf = 0u;
        for (var d0 = 0u; d0 < dp4; d0 += 2u) {
            let nd = d0 + 2u;
            let more = nd < dp4;
            var nx = vec4<f32>(0.0);
            var nc = vec4<f32>(0.0);
            if more {
                nx = x[xg + nd];
                nc = cen[cg + nd];
            }
            let base = buf * 512u;
            step128(base + ty, base + 256u + tx, &acc);
            step128(base + 128u + ty, base + 384u + tx, &acc);
            if more {
                let nb = (1u - buf) * 512u;
                tiles[nb + slot] = nx;
                tiles[nb + 256u + slot] = nc;
            }
            workgroupBarrier();
            buf = 1u - buf;
        }
        let g = p.c_base + c0 + tx;
        let e0 = bias4(c0 + tx, 16u);
        let e1 = bias4(c0 + tx + 64u, 16u);
        bests[0] = upd4(upd4(bests[0], e0 + p.alpha * acc[0], g, 16u), e1 + p.alpha * acc[1], g + 64u, 16u);
        bests[1] = upd4(upd4(bests[1], e0 + p.alpha * acc[2], g, 16u), e1 + p.alpha * acc[3], g + 64u, 16u);
        bests[2] = upd4(upd4(bests[2], e0 + p.alpha * acc[4], g, 16u), e1 + p.alpha * acc[5], g + 64u, 16u);
        bests[3] = upd4(upd4(bests[3], e0 + p.alpha * acc[6], g, 16u), e1 + p.alpha * acc[7], g + 64u, 16u);
        bests[4] = upd4(upd4(bests[4], e0 + p.alpha * acc[8], g, 16u), e1 + p.alpha * acc[9], g + 64u, 16u);
        bests[5] = upd4(upd4(bests[5], e0 + p.alpha * acc[10], g, 16u), e1 + p.alpha * acc[11], g + 64u, 16u);
        bests[6] = upd4(upd4(bests[6], e0 + p.alpha * acc[12], g, 16u), e1 + p.alpha * acc[13], g + 64u, 16u);
        bests[7] = upd4(upd4(bests[7], e0 + p.alpha * acc[14], g, 16u), e1 + p.alpha * acc[15], g + 64u, 16u);
    }

    // Per-row reduction of the 16 partial bests (one per tx), in the tiles
    // array: row r's partials at r·8 .. r·8 + 7, two (key, index) per vec4.
    // The loop above ended on a barrier, so the tiles are free.
    let at = ty * 8u + tx / 2u;
    park(at + 0u, tx, bests[0]);
    park(at + 128u, tx, bests[1]);
    park(at + 256u, tx, bests[2]);
    park(at + 384u, tx, bests[3]);
    park(at + 512u, tx, bests[4]);
    park(at + 640u, tx, bests[5]);
    park(at + 768u, tx, bests[6]);
    park(at + 896u, tx, bests[7]);
    workgroupBarrier();
    if li < 128u {
        var b = start(row0 + li);
        // Earlier dispatches saw lower centroid indices: replace only when
        // strictly better. Among this dispatch's 16 partial bests, the lowest
        // index wins ties.
        var m = Best(tiles[li * 8u].x, bitcast<u32>(tiles[li * 8u].y));
        for (var t = 1u; t < 16u; t++) {
            let v = tiles[li * 8u + t / 2u];
            var k = v.x;
            var i = bitcast<u32>(v.y);
            if (t & 1u) == 1u {
                k = v.z;
                i = bitcast<u32>(v.w);
            }
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
