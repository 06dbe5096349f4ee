// The nn umbrella include: modules, layers, containers, losses, init and functional, so a
// training script needs only #include "nn/nn.h" (plus autograd/ops.h, included here).
#pragma once

#include "autograd/ops.h"
#include "nn/activation.h"
#include "nn/container.h"
#include "nn/conv.h"
#include "nn/embedding.h"
#include "nn/functional.h"
#include "nn/init.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/module.h"
#include "nn/norm.h"
#include "nn/pooling.h"
#include "nn/resnet_block.h"
