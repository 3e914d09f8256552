"""The generated ImageNet stand-in (tfds's own imagenet2012 builder fed 24 train / 10
validation random JPEGs, tests/data/conftest.py), prepared once for the DMNN tests."""
import pytest
import tensorflow_datasets as tfds

from tests.data.conftest import StandInImagenet2012


@pytest.fixture(scope="session")
def imagenet_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("imagenet_standin"))
  StandInImagenet2012(data_dir=directory).download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return directory
