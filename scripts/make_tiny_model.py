"""Write tests/data/tiny-model: the tiny test model as a folder, committed so that golden
archives made with it keep decoding whatever torch's random initialisation does in future."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tiny import tiny_model  # noqa: E402

if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny-model"
    model = tiny_model()
    model.hf.save_pretrained(target)
    model.tokenizer.hf.save_pretrained(target)
    print(target, model.fingerprint)
