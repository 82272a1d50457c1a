// e^x by the CPU's exp_canonical (engine/matmul_internal.h): the same clamps,
// range reduction and polynomial, each step an fma or a single rounding as
// there. The constants are given as bits so no decimal parsing can move them.
float exp_canonical(float xin) {
  const float kLo = uintBitsToFloat(0xc2ae999au), kHi = uintBitsToFloat(0x42b0999au);
  const float kLog2e = uintBitsToFloat(0x3fb8aa3bu);
  const float kC1 = uintBitsToFloat(0x3f318000u), kC2 = uintBitsToFloat(0x395e8083u);
  const float kP[6] = float[6](uintBitsToFloat(0x39506967u), uintBitsToFloat(0x3ab743ceu),
                               uintBitsToFloat(0x3c088908u), uintBitsToFloat(0x3d2aa9c1u),
                               uintBitsToFloat(0x3e2aaaaau), uintBitsToFloat(0x3f000000u));
  float x = xin > kLo ? xin : kLo;
  x = x < kHi ? x : kHi;
  precise float n = roundEven(x * kLog2e);
  precise float r = fma(-n, kC1, x);
  r = fma(n, kC2, r);
  precise float p = kP[0];
  for (int k = 1; k < 6; ++k) p = fma(p, r, kP[k]);
  precise float rr = r * r;
  precise float y = fma(p, rr, r) + 1.0;
  const float scale = uintBitsToFloat(uint(int(n) + 127) << 23);
  precise float out_v = y * scale;
  return out_v;
}
