// Umbrella header for the optimizers, FP32 master weights, LR schedulers and gradient clipping:
// #include "optim/optim.h", then mantissa::optim::Adam, OneCycleLR, clip_grad_norm_, ...
#pragma once

#include "optim/adam.h"
#include "optim/clip_grad.h"
#include "optim/lr_scheduler.h"
#include "optim/master_weights.h"
#include "optim/optimizer.h"
#include "optim/sgd.h"
