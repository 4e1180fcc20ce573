//! The libm functions std programs' dependencies call (libm is not linked): `pow` (tokio).
//! Integer exponents are exact (repeated squaring); others use exp(y ln x) with argument
//! reduction, good to a few ulps.

/// x * 2^k, by building the power of two (k in the normal range, or by steps).
fn ldexp(mut x: f64, mut k: i64) -> f64 {
    while k > 1000 {
        x *= f64::from_bits(((1023 + 1000) as u64) << 52);
        k -= 1000;
    }
    while k < -1000 {
        x *= f64::from_bits(((1023 - 1000) as u64) << 52);
        k += 1000;
    }
    x * f64::from_bits(((1023 + k) as u64) << 52)
}

/// x^n by repeated squaring.
fn powi(x: f64, n: i64) -> f64 {
    let mut base = if n < 0 { 1.0 / x } else { x };
    let mut n = n.unsigned_abs();
    let mut result = 1.0;
    while n > 0 {
        if n & 1 == 1 {
            result *= base;
        }
        base *= base;
        n >>= 1;
    }
    result
}

/// ln(x) for finite x > 0.
fn ln(x: f64) -> f64 {
    // x = m * 2^e with m in [sqrt(1/2), sqrt(2)); ln(m) by the atanh series.
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if e == -1023 {
        // Subnormal: normalise first.
        return ln(ldexp(x, 54)) - 54.0 * core::f64::consts::LN_2;
    }
    if m > core::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum: f64 = 0.0;
    let mut k = 1.0;
    while f64::abs(term) > 1e-18 * f64::abs(sum).max(1e-300) {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * core::f64::consts::LN_2
}

/// e^x for finite x.
fn exp(x: f64) -> f64 {
    if x > 709.8 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    // x = k ln2 + r, |r| <= ln2/2; e^r by Taylor series.
    let q = x / core::f64::consts::LN_2;
    let k = (q + if q < 0.0 { -0.5 } else { 0.5 }) as i64;
    let r = x - k as f64 * core::f64::consts::LN_2;
    let mut term: f64 = 1.0;
    let mut sum = 1.0;
    let mut n = 1.0;
    while f64::abs(term) > 1e-18 {
        term *= r / n;
        sum += term;
        n += 1.0;
    }
    ldexp(sum, k)
}

#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if f64::abs(y) < 9.0e15 && (y as i64) as f64 == y {
        return powi(x, y as i64);
    }
    if x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return if y > 0.0 { 0.0 } else { f64::INFINITY };
    }
    if x.is_infinite() {
        return if y > 0.0 { f64::INFINITY } else { 0.0 };
    }
    if y.is_infinite() {
        return match (x > 1.0, y > 0.0) {
            (true, true) | (false, false) => f64::INFINITY,
            _ => 0.0,
        };
    }
    exp(y * ln(x))
}
