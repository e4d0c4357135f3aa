# autograd_ref.py — torch autograd of the composite loss in tests/lua/test_autograd.lua ("matches torch
# autograd"), on the inputs sfwb wrote (in.pt); gradients into out.pt.
import sys

import torch
import torch.nn.functional as F

d = torch.load(sys.argv[1])
A, B, C = (d[k].clone().requires_grad_(True) for k in ("A", "B", "C"))
h = A @ B + C
l1 = (torch.softmax(h, dim=1) * torch.tanh(h)).sum()
l2 = torch.log_softmax(h, dim=0).mean()
l3 = (C.sqrt() * C.log()).sum() + C.pow(3).mean()
l4 = A[:, 1:4].t().abs().max() + A.gelu().exp().mean() if hasattr(A, "gelu") else A[:, 1:4].t().abs().max() + F.gelu(A).exp().mean()
l5 = torch.cat([A, torch.sigmoid(A)], dim=0).std()
l6 = (F.silu(A) + torch.clamp(A, -0.5, 0.5) * 2 + torch.relu(A)).sum()
l7 = F.layer_norm(h, (h.shape[-1],), eps=1e-5).pow(2).mean() + (h / (C + 1)).square().mean()
loss = l1 + l2 + l3 + l4 + l5 + l6 + l7
loss.backward()
torch.save({"loss": loss.detach(), "gA": A.grad, "gB": B.grad, "gC": C.grad}, sys.argv[2])
