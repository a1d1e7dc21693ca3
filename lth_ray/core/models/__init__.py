"""Networks by name (a registry), their initialisation, and how a cohort stacks them."""

# The built-in nets beyond the plan nets register themselves on import (OpenLTH's CIFAR ResNets and VGGs).
from lth_ray.core.models import cifar_resnet, cifar_vgg  # noqa: F401
