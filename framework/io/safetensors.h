#pragma once
/// safetensors reading and writing (see safetensors_reader.h and safetensors_writer.h).
#include "framework/io/safetensors_format.h"
#include "framework/io/safetensors_reader.h"
#include "framework/io/safetensors_writer.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "sdtrain's weight readers assume a little-endian host");
