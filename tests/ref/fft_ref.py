# fft_ref.py — torch.fft references for sfwb.fft (tests/lua/test_fft.lua): fft/ifft/rfft/irfft along
# several dims with n= padding/truncation and every norm, and the attention-map spectrum the
# attention-extraction notebooks compute (rfft magnitude along key frames, last query rows dropped).
# Usage: fft_ref.py OUT.lua ; complex results as torch.view_as_real (a trailing dim of 2).
import sys
import torch
from luaout import write_lua


def main(out):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    xc = torch.randn(4, 6, 2, dtype=torch.float64)
    a = torch.randn(12, 21, 21, dtype=torch.float64)
    R = {"x": x, "xc": xc, "a": a, "cases": []}

    def real(t):
        return torch.view_as_real(t) if t.is_complex() else t

    cases = []
    for dim in (-1, 1, 2):  # 1-based in sfwb; torch dims 0-based
        tdim = dim - 1 if dim > 0 else dim
        cases.append(("rfft", "x", {"dim": dim}, real(torch.fft.rfft(x, dim=tdim))))
        cases.append(("fft", "x", {"dim": dim}, real(torch.fft.fft(x, dim=tdim))))
    for norm in ("backward", "ortho", "forward"):
        cases.append(("rfft", "x", {"norm": norm, "n": 11}, real(torch.fft.rfft(x, n=11, norm=norm))))
        cases.append(("rfft", "x", {"norm": norm, "n": 5}, real(torch.fft.rfft(x, n=5, norm=norm))))
        X = torch.fft.rfft(x, norm=norm)
        cases.append(("irfft", "rfft_x_" + norm, {"norm": norm, "n": 8}, torch.fft.irfft(X, n=8, norm=norm)))
        R["rfft_x_" + norm] = real(X)
        c = torch.view_as_complex(xc)
        cases.append(("fft", "xc", {"norm": norm, "complex": True, "dim": 1}, real(torch.fft.fft(c, dim=0, norm=norm))))
        cases.append(("ifft", "xc", {"norm": norm, "dim": -1}, real(torch.fft.ifft(c, dim=-1, norm=norm))))
    cases.append(("irfft", "rfft_x_backward", {"dim": -1}, torch.fft.irfft(torch.view_as_complex(R["rfft_x_backward"].contiguous()))))
    for fn, inp, opts, ref in cases:
        R["cases"].append({"fn": fn, "input": inp, "opts": opts, "ref": ref})
    # the notebook's spectrum: per head, the last query row over key frames 0..F-4, |rfft| (DC included)
    R["spectrum"] = torch.fft.rfft(a[:, -1, :-3], dim=-1).abs()
    R["fftfreq"] = torch.fft.fftfreq(7, 0.5)
    R["rfftfreq"] = torch.fft.rfftfreq(8)
    write_lua(out, R)


if __name__ == "__main__":
    main(sys.argv[1])
