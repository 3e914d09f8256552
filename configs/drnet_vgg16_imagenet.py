"""DRNet paper setting: torchvision's pretrained VGG-16 on ImageNet, > 90% of channels kept, promotion over
the 1000-way network (section 4.5, Table 6, Figs. 5-6; see configs/drnet_paper.py).

    python -m jaxdr.main --config=configs/drnet_vgg16_imagenet.py --workdir=DIR \
        --config.pretrained=path/to/vgg16-397923af.pth --config.dataset.data_dir=TFDS_DIR
"""
import os
import runpy


def get_config():
  table = runpy.run_path(os.path.join(os.path.dirname(__file__), "drnet_paper.py"))
  return table["get_config"]("vgg16_imagenet2012")
