"""`data synth`, `data clutter` and `data hard` write a whole folder `OUT/NAME/` and replace what
is there (crash-safe swap, nairstd.io.atomic_dir). A user's own folder that happens to carry that
name must never be deleted: each command refuses it with one `error:` line and leaves it as it
was (issue 23: every command that writes refuses to destroy what it did not make)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import one_error_line
from PIL import Image

from nairstd.cli import main
from nairstd.data.hard import HARD_NAME


def small_target_dataset(root):
    """A toolbox-layout test split of two 256x256 images, each with one 3x3 target (IRSTD-Hard
    keeps them: every target is under 20 px)."""
    folder = root / "SRC"
    for part in ("images", "masks", "img_idx"):
        (folder / part).mkdir(parents=True)
    for i in range(2):
        image, mask = np.full((256, 256), 40, np.uint8), np.zeros((256, 256), np.uint8)
        image[30:33, 20 + i : 23 + i], mask[30:33, 20 + i : 23 + i] = 230, 255
        Image.fromarray(image).save(folder / "images" / f"im{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"im{i}.png")
    (folder / "img_idx" / "test_SRC.txt").write_text("im0\nim1\n")
    (folder / "img_idx" / "train_SRC.txt").write_text("")
    return folder


@pytest.mark.parametrize(
    "verb, name",
    [
        (["data", "synth", "synthetic-tiny", "--profile", "smoke"], "synthetic-tiny"),
        (["data", "clutter", "--frames", "1"], "synthetic-clutter"),
        (["data", "hard"], HARD_NAME),
    ],
)
def test_a_users_folder_of_the_same_name_is_refused_and_kept(tmp_path, capsys, verb, name):
    out = tmp_path / "out"
    users = out / name
    (users / "images").mkdir(parents=True)
    (users / "images" / "mine.png").write_bytes(b"the user's data")
    (users / "notes.txt").write_text("keep me")
    if verb[1] == "hard":
        verb = [*verb, str(small_target_dataset(tmp_path))]
    assert main([*verb, "--out", str(out)]) != 0
    line = one_error_line(capsys)
    assert str(users) in line and "refusing" in line
    assert (users / "notes.txt").read_text() == "keep me"
    assert (users / "images" / "mine.png").read_bytes() == b"the user's data"
    assert sorted(p.name for p in out.iterdir()) == [name]  # no partial folder left behind
    # An empty folder of that name holds nothing to lose: it is filled.
    (users / "images" / "mine.png").unlink()
    (users / "notes.txt").unlink()
    (users / "images").rmdir()
    assert main([*verb, "--out", str(out)]) == 0
    assert (users / "meta.json").is_file()
