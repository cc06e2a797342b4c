"""Fine-tune a pretrained ViT on encrypted images with a plain PyTorch loop.

    python examples/finetune.py --data DATA --pretrained vit.pth --key owner.key --scheme block-pixel \\
        --block-size 4 --model vit_pico_patch4_32 --init keyed --epochs 3

DATA is an ImageFolder root with train/ and test/; the weights are a local timm-layout state dict or a
patchcrypt run. The data owner runs this: images are augmented as plain images, then encrypted on the fly
(patchcrypt.transforms.Encrypt), so the model only ever sees ciphertext. ``--init keyed`` transforms the
pretrained weights with the key first (centred inputs), which makes this loop follow plain fine-tuning.
"""

import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from patchcrypt import Key
from patchcrypt.models import create_model
from patchcrypt.models.keyed import centre_input, key_model
from patchcrypt.models.pretrained import load_weights
from patchcrypt.transforms import Encrypt, EncryptedImageFolder


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """A plain-image augmentation on uint8 (C, H, W): horizontal flip half of the time."""
    return x.flip(-1) if torch.rand(()) < 0.5 else x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--pretrained", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--scheme", default="block-pixel")
    ap.add_argument("--block-size", type=int, default=4)
    ap.add_argument("--model", default="vit_pico_patch4_32")
    ap.add_argument("--init", choices=["plain", "keyed"], default="keyed")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    key = Key.load(args.key)
    encrypt = Encrypt(key, args.scheme, args.block_size)             # after augmentation, never before
    train_set = EncryptedImageFolder(args.data, encrypt, augment=random_flip, split="train")
    test_set = EncryptedImageFolder(args.data, encrypt, split="test")
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, num_workers=args.workers)
    test_loader = DataLoader(test_set, 256, num_workers=args.workers)

    img_size = train_set.images.shape[-1]
    model = create_model(args.model, num_classes=len(train_set.classes), img_size=img_size)
    info = load_weights(model, args.pretrained, classes=train_set.classes)
    for note in info.notes:
        print(note)
    if args.init == "keyed":
        key_model(model, key, args.scheme, args.block_size, centred=True)
    else:
        centre_input(model)  # the same function; the paper's method fine-tunes these weights as they are
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)

    for epoch in range(1, args.epochs + 1):
        model.train()
        for x, y in train_loader:
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        print(f"epoch {epoch}: loss {loss.item():.4f}  test accuracy {correct / len(test_set):.4f}")


if __name__ == "__main__":
    main()
