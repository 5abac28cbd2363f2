#pragma once
/// torch.save zip checkpoints (.ckpt): restricted reading and torch-compatible writing.
#include "framework/io/ckpt_reader.h"
#include "framework/io/ckpt_writer.h"
