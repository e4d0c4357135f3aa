/* lua_enc_util.h — helpers shared by the encoder bindings (T5, VAE, CLIP): weights from a Lua table,
 * inputs as contiguous cpu tensors of one dtype. */
#ifndef SF_LUA_ENC_UTIL_H
#define SF_LUA_ENC_UTIL_H

#include <lua.h>

#include "core/tensor.h"

typedef struct { lua_State *L; int idx; } sf_lua_weights;
/* sf_weight_getter over the table at ctx->idx: borrowed tensor or NULL */
sf_tensor *sf_lua_weights_get(void *ctx, const char *name);
/* a new reference to a contiguous cpu tensor of dtype dt holding the tensor argument at idx; raises */
sf_tensor *sf_lua_check_cpu(lua_State *L, int idx, sf_dtype dt);
/* the device string at field "device" of the options table at idx (default "cpu") */
sf_device sf_lua_opt_device(lua_State *L, int idx);

#endif
