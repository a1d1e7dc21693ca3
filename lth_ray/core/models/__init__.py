"""Networks by name (a registry), their initialisation, and how a cohort stacks them."""

# The built-in nets register themselves on import: the thesis' plan nets, then OpenLTH's CIFAR ResNets and VGGs.
from lth_ray.core.models import cifar_resnet, cifar_vgg, plan_nets  # noqa: F401
