"""Where UniFormer-S's GPU time goes: torch.profiler's top CUDA kernels for bf16 inference and one training step."""
import sys, torch
from torch.profiler import profile, ProfilerActivity
sys.path.insert(0, ".")
from echobook.models import create_model
dev = torch.device("cuda")
model = create_model("uniformer_s").to(dev)
x = torch.randn(32, 1, 36, 112, 112, device=dev)
def fwd():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        return model(x)
for _ in range(3):
    fwd().float().sum().backward()
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(3):
        fwd().float().sum().backward()
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))
