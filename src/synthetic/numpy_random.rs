//! The parts of NumPy's `np.random.Generator` (PCG64 seeded from a
//! `SeedSequence`) that the baseline harness's synthetic generator draws
//! from, reproduced bit for bit.
//!
//! Ported from NumPy (numpy/random/bit_generator.pyx, src/pcg64/pcg64.h,
//! src/distributions/distributions.c, _bounded_integers.pyx.in,
//! _generator.pyx), BSD-3-Clause, Copyright (c) 2005-2025, NumPy Developers;
//! the licence text is in `ziggurat.rs`. The transcendental functions are the
//! platform libm's (`log`, `log1p`, `exp`, `log1pf` through Rust's std),
//! which is what NumPy's C distributions call too.

use super::ziggurat::*;

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;
const POOL_SIZE: usize = 4;

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut v = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    v = v.wrapping_mul(*hash_const);
    v ^ (v >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let r = MIX_MULT_L
        .wrapping_mul(x)
        .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    r ^ (r >> XSHIFT)
}

/// `np.random.SeedSequence(entropy)` for a list of non-negative integers
/// (no spawn key), as `SeedSequence([seed, *stream])`.
#[derive(Clone, Debug)]
pub struct SeedSequence {
    pool: [u32; POOL_SIZE],
}

impl SeedSequence {
    pub fn new(entropy: &[u64]) -> Self {
        // Every Python int becomes its little-endian 32-bit words; 0 is one
        // zero word.
        let mut words: Vec<u32> = Vec::with_capacity(entropy.len() * 2);
        for &e in entropy {
            if e == 0 {
                words.push(0);
            }
            let mut n = e;
            while n > 0 {
                words.push(n as u32);
                n >>= 32;
            }
        }
        let mut pool = [0u32; POOL_SIZE];
        let mut hc = INIT_A;
        for (i, p) in pool.iter_mut().enumerate() {
            *p = hashmix(words.get(i).copied().unwrap_or(0), &mut hc);
        }
        for i_src in 0..POOL_SIZE {
            for i_dst in 0..POOL_SIZE {
                if i_src != i_dst {
                    let h = hashmix(pool[i_src], &mut hc);
                    pool[i_dst] = mix(pool[i_dst], h);
                }
            }
        }
        for &w in words.iter().skip(POOL_SIZE) {
            for p in pool.iter_mut() {
                let h = hashmix(w, &mut hc);
                *p = mix(*p, h);
            }
        }
        SeedSequence { pool }
    }

    /// `generate_state(n_words, np.uint64)`.
    pub fn generate_state_u64(&self, n_words: usize) -> Vec<u64> {
        let mut hc = INIT_B;
        let words: Vec<u32> = (0..2 * n_words)
            .map(|i| {
                let mut v = self.pool[i % POOL_SIZE] ^ hc;
                hc = hc.wrapping_mul(MULT_B);
                v = v.wrapping_mul(hc);
                v ^ (v >> XSHIFT)
            })
            .collect();
        words
            .chunks_exact(2)
            .map(|w| w[0] as u64 | ((w[1] as u64) << 32))
            .collect()
    }
}

const PCG_MULT: u128 = (2549297995355413924u128 << 64) | 4865540595714422341u128;

/// `np.random.default_rng(SeedSequence(...))`: PCG64 (XSL-RR 128/64) with
/// NumPy's 32-bit buffering, and the distributions the harness uses.
#[derive(Clone, Debug)]
pub struct Generator {
    state: u128,
    inc: u128,
    has_uint32: bool,
    uinteger: u32,
}

impl Generator {
    /// `default_rng(SeedSequence(entropy))`.
    pub fn new(entropy: &[u64]) -> Self {
        let s = SeedSequence::new(entropy).generate_state_u64(4);
        let initstate = ((s[0] as u128) << 64) | s[1] as u128;
        let initseq = ((s[2] as u128) << 64) | s[3] as u128;
        let mut g = Generator {
            state: 0,
            inc: (initseq << 1) | 1,
            has_uint32: false,
            uinteger: 0,
        };
        g.step();
        g.state = g.state.wrapping_add(initstate);
        g.step();
        g
    }

    #[inline(always)]
    fn step(&mut self) {
        self.state = self.state.wrapping_mul(PCG_MULT).wrapping_add(self.inc);
    }

    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let s = self.state;
        ((s >> 64) as u64 ^ s as u64).rotate_right((s >> 122) as u32)
    }

    /// Low half of a fresh 64-bit output, the high half kept for the next
    /// call (NumPy's PCG64 `next_uint32`; the buffer survives 64-bit draws).
    #[inline(always)]
    pub fn next_u32(&mut self) -> u32 {
        if self.has_uint32 {
            self.has_uint32 = false;
            return self.uinteger;
        }
        let n = self.next_u64();
        self.has_uint32 = true;
        self.uinteger = (n >> 32) as u32;
        n as u32
    }

    /// `random()`: uniform on [0, 1) with 53 bits.
    #[inline(always)]
    pub fn random(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9007199254740992.0)
    }

    #[inline(always)]
    fn next_float(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0f32 / 16777216.0f32)
    }

    /// `standard_normal()` (float64 ziggurat).
    #[inline]
    pub fn standard_normal(&mut self) -> f64 {
        loop {
            let mut r = self.next_u64();
            let idx = (r & 0xff) as usize;
            r >>= 8;
            let sign = r & 1;
            let rabs = (r >> 1) & 0x000f_ffff_ffff_ffff;
            let mut x = rabs as f64 * WI_DOUBLE[idx];
            if sign == 1 {
                x = -x;
            }
            if rabs < KI_DOUBLE[idx] {
                return x;
            }
            if idx == 0 {
                loop {
                    let xx = -ZIGGURAT_NOR_INV_R * (-self.random()).ln_1p();
                    let yy = -(-self.random()).ln_1p();
                    if yy + yy > xx * xx {
                        return if (rabs >> 8) & 1 == 1 {
                            -(ZIGGURAT_NOR_R + xx)
                        } else {
                            ZIGGURAT_NOR_R + xx
                        };
                    }
                }
            } else if (FI_DOUBLE[idx - 1] - FI_DOUBLE[idx]) * self.random() + FI_DOUBLE[idx]
                < (-0.5 * x * x).exp()
            {
                return x;
            }
        }
    }

    /// `standard_normal(dtype=np.float32)` (its own float32 ziggurat on
    /// buffered 32-bit draws).
    #[inline]
    pub fn standard_normal_f32(&mut self) -> f32 {
        loop {
            let r = self.next_u32();
            if let Some(x) = self.normal_f32_from(r) {
                return x;
            }
        }
    }

    /// One ziggurat attempt from the 32-bit draw `r`: the value, or None
    /// when NumPy rejects it and starts over with a fresh draw.
    #[inline(always)]
    fn normal_f32_from(&mut self, r: u32) -> Option<f32> {
        let idx = (r & 0xff) as usize;
        let sign = (r >> 8) & 1;
        let rabs = (r >> 9) & 0x007f_ffff;
        let mut x = rabs as f32 * WI_FLOAT[idx];
        if sign == 1 {
            x = -x;
        }
        if rabs < KI_FLOAT[idx] {
            return Some(x);
        }
        self.normal_f32_unlikely(idx, rabs, x)
    }

    #[cold]
    #[inline(never)]
    fn normal_f32_unlikely(&mut self, idx: usize, rabs: u32, x: f32) -> Option<f32> {
        if idx == 0 {
            loop {
                let xx = -ZIGGURAT_NOR_INV_R_F * (-self.next_float()).ln_1p();
                let yy = -(-self.next_float()).ln_1p();
                if yy + yy > xx * xx {
                    return Some(if (rabs >> 8) & 1 == 1 {
                        -(ZIGGURAT_NOR_R_F + xx)
                    } else {
                        ZIGGURAT_NOR_R_F + xx
                    });
                }
            }
        }
        // C promotes the comparison to double: exp(-0.5 * x * x) with a
        // double literal.
        let lhs = (FI_FLOAT[idx - 1] - FI_FLOAT[idx]) * self.next_float() + FI_FLOAT[idx];
        let xd = x as f64;
        ((lhs as f64) < (-0.5 * xd * xd).exp()).then_some(x)
    }

    /// `out[i] = standard_normal_f32()` in order, with both halves of each
    /// 64-bit output handled in registers while the draws are accepted at
    /// once (the rare slow path goes through the generator state).
    pub fn fill_standard_normal_f32(&mut self, out: &mut [f32]) {
        let n = out.len();
        let mut i = 0;
        'outer: while i < n {
            if self.has_uint32 || i + 2 > n {
                out[i] = self.standard_normal_f32();
                i += 1;
                continue;
            }
            let mut state = self.state;
            let inc = self.inc;
            while i + 2 <= n {
                state = state.wrapping_mul(PCG_MULT).wrapping_add(inc);
                let v = ((state >> 64) as u64 ^ state as u64).rotate_right((state >> 122) as u32);
                let (lo, hi) = (v as u32, (v >> 32) as u32);
                let (ilo, ihi) = ((lo & 0xff) as usize, (hi & 0xff) as usize);
                let (alo, ahi) = ((lo >> 9) & 0x007f_ffff, (hi >> 9) & 0x007f_ffff);
                if alo < KI_FLOAT[ilo] && ahi < KI_FLOAT[ihi] {
                    let xl = alo as f32 * WI_FLOAT[ilo];
                    let xh = ahi as f32 * WI_FLOAT[ihi];
                    out[i] = if (lo >> 8) & 1 == 1 { -xl } else { xl };
                    out[i + 1] = if (hi >> 8) & 1 == 1 { -xh } else { xh };
                    i += 2;
                    continue;
                }
                // Hand the draw back to the generator as NumPy's buffer would
                // hold it and finish this value the slow way.
                self.state = state;
                self.has_uint32 = true;
                self.uinteger = hi;
                out[i] = match self.normal_f32_from(lo) {
                    Some(x) => x,
                    None => self.standard_normal_f32(),
                };
                i += 1;
                continue 'outer;
            }
            self.state = state;
        }
    }

    /// `normal(loc, scale)`.
    #[inline]
    pub fn normal(&mut self, loc: f64, scale: f64) -> f64 {
        loc + scale * self.standard_normal()
    }

    /// `standard_exponential()` (ziggurat, the Generator default).
    pub fn standard_exponential(&mut self) -> f64 {
        loop {
            let mut ri = self.next_u64();
            ri >>= 3;
            let idx = (ri & 0xff) as usize;
            ri >>= 8;
            let x = ri as f64 * WE_DOUBLE[idx];
            if ri < KE_DOUBLE[idx] {
                return x;
            }
            if idx == 0 {
                return ZIGGURAT_EXP_R - (-self.random()).ln_1p();
            }
            if (FE_DOUBLE[idx - 1] - FE_DOUBLE[idx]) * self.random() + FE_DOUBLE[idx] < (-x).exp() {
                return x;
            }
            // NumPy recurses here; a fresh draw is the same thing.
        }
    }

    /// `standard_gamma(shape)` for shape > 1 (Marsaglia–Tsang), and the
    /// other branches NumPy has.
    pub fn standard_gamma(&mut self, shape: f64) -> f64 {
        if shape == 1.0 {
            return self.standard_exponential();
        }
        if shape == 0.0 {
            return 0.0;
        }
        if shape < 1.0 {
            loop {
                let u = self.random();
                let v = self.standard_exponential();
                if u <= 1.0 - shape {
                    let x = u.powf(1.0 / shape);
                    if x <= v {
                        return x;
                    }
                } else {
                    let y = -((1.0 - u) / shape).ln();
                    let x = (1.0 - shape + shape * y).powf(1.0 / shape);
                    if x <= v + y {
                        return x;
                    }
                }
            }
        }
        let b = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * b).sqrt();
        loop {
            let (x, mut v);
            loop {
                let xn = self.standard_normal();
                let vn = 1.0 + c * xn;
                if vn > 0.0 {
                    x = xn;
                    v = vn;
                    break;
                }
            }
            v = v * v * v;
            let u = self.random();
            if u < 1.0 - 0.0331 * (x * x) * (x * x) {
                return b * v;
            }
            if u.ln() < 0.5 * x * x + b * (1.0 - v + v.ln()) {
                return b * v;
            }
        }
    }

    /// `chisquare(df)`.
    pub fn chisquare(&mut self, df: f64) -> f64 {
        2.0 * self.standard_gamma(df / 2.0)
    }

    /// `geometric(p)`: the search method for p ≥ 1/3, inversion of an
    /// exponential draw below.
    pub fn geometric(&mut self, p: f64) -> i64 {
        if p >= 0.333333333333333333333333 {
            let mut x = 1i64;
            let mut sum = p;
            let mut prod = p;
            let q = 1.0 - p;
            let u = self.random();
            while u > sum {
                prod *= q;
                sum += prod;
                x += 1;
            }
            x
        } else {
            let z = (-self.standard_exponential() / (-p).ln_1p()).ceil();
            if z >= 9.223372036854776e18 {
                i64::MAX
            } else {
                z as i64
            }
        }
    }

    /// Lemire's bounded draw on [0, rng] for rng < 2^32 − 1 (NumPy's
    /// `buffered_bounded_lemire_uint32`, which never uses its own buffer).
    fn bounded_lemire_u32(&mut self, rng: u32) -> u32 {
        let rng_excl = rng.wrapping_add(1);
        let mut m = self.next_u32() as u64 * rng_excl as u64;
        let mut leftover = m as u32;
        if leftover < rng_excl {
            let threshold = (u32::MAX - rng) % rng_excl;
            while leftover < threshold {
                m = self.next_u32() as u64 * rng_excl as u64;
                leftover = m as u32;
            }
        }
        (m >> 32) as u32
    }

    /// Lemire's bounded draw on [0, rng] for 64-bit ranges.
    fn bounded_lemire_u64(&mut self, rng: u64) -> u64 {
        let rng_excl = rng.wrapping_add(1);
        let mut x = self.next_u64();
        let mut leftover = x.wrapping_mul(rng_excl);
        if leftover < rng_excl {
            let threshold = (u64::MAX - rng) % rng_excl;
            while leftover < threshold {
                x = self.next_u64();
                leftover = x.wrapping_mul(rng_excl);
            }
        }
        ((x as u128 * rng_excl as u128) >> 64) as u64
    }

    /// `integers(low, high, size=n)` with the default int64 dtype
    /// (`random_bounded_uint64_fill`, Lemire, not masked).
    pub fn integers(&mut self, low: i64, high: i64, n: usize) -> Vec<i64> {
        assert!(high > low, "integers: empty range");
        let rng = (high as i128 - 1 - low as i128) as u64;
        let off = low;
        (0..n)
            .map(|_| {
                let v = if rng == 0 {
                    0
                } else if rng < 0xFFFF_FFFF {
                    self.bounded_lemire_u32(rng as u32) as u64
                } else if rng == 0xFFFF_FFFF {
                    self.next_u32() as u64
                } else if rng == u64::MAX {
                    self.next_u64()
                } else {
                    self.bounded_lemire_u64(rng)
                };
                off.wrapping_add(v as i64)
            })
            .collect()
    }

    /// `random_interval(max)`: masked rejection on [0, max].
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        mask |= mask >> 32;
        if max <= 0xFFFF_FFFF {
            loop {
                let v = (self.next_u32() as u64) & mask;
                if v <= max {
                    return v;
                }
            }
        } else {
            loop {
                let v = self.next_u64() & mask;
                if v <= max {
                    return v;
                }
            }
        }
    }

    /// `permutation(n)`: Fisher–Yates over `arange(n)` from the end.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut a: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u64) as usize;
            a.swap(i, j);
        }
        a
    }
}

/// `np.add.reduce` of a contiguous float64 array: NumPy's pairwise sum (8
/// accumulators per block of up to 128, halves rounded to multiples of 8).
pub fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}
