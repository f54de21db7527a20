#!/usr/bin/env python3
"""What a PyTorch user brings to daft, made here: a torchvision ResNet-18 trained briefly on Fashion-MNIST source images
from an ImageFolder at 64 px (3 epochs, SGD) and saved as a plain state_dict with `safetensors.torch.save_file`; then
its accuracy on test folders as PyTorch measures it, with daft's evaluation transform at --image-size 64
(Resize(73), CenterCrop(64), ImageNet mean/std). With --check FILE it only loads FILE (a state_dict daft wrote)
strictly into torchvision's resnet18 and reports the same accuracies. The recipe and the numbers: docs/usage.md.

    python3 launch/torchvision_resnet18_fashion.py ROOT                  # ROOT/src → ROOT/r18.safetensors
    python3 launch/torchvision_resnet18_fashion.py ROOT --check runs/x/final.safetensors [--sets test-id,test-clean]
"""
import argparse, time, torch, torchvision
from torchvision import transforms as T
from safetensors.torch import save_file, load_file

ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("--check")
ap.add_argument("--sets", default="test-clean,test-id,test-rotate")
args = ap.parse_args()
torch.manual_seed(0); torch.set_num_threads(2)
norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
model = torchvision.models.resnet18(num_classes=10)
if args.check:
    model.load_state_dict(load_file(args.check), strict=True)
else:
    train = torchvision.datasets.ImageFolder(f"{args.root}/src", T.Compose([T.RandomResizedCrop(64, scale=(0.6, 1)), T.RandomHorizontalFlip(), T.ToTensor(), norm]))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True, num_workers=0)
    t0 = time.time()
    for epoch in range(3):
        model.train()
        for x, y in loader:
            opt.zero_grad(); loss = torch.nn.functional.cross_entropy(model(x), y); loss.backward(); opt.step()
        print(f"epoch {epoch}: last loss {loss.item():.3f}, {time.time() - t0:.0f} s", flush=True)
    save_file(model.state_dict(), f"{args.root}/r18.safetensors")
model.eval()
evaluation = T.Compose([T.Resize(round(64 * 256 / 224)), T.CenterCrop(64), T.ToTensor(), norm])
for name in args.sets.split(","):
    ds = torchvision.datasets.ImageFolder(f"{args.root}/{name}", evaluation)
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(ds, batch_size=250):
            correct += (model(x).argmax(1) == y).sum().item()
    print(f"pytorch accuracy {name}: {correct}/{len(ds)} = {correct / len(ds):.4f}")
