/* lua_tensor.h — helpers every Lua binding uses to pass tensors and errors across the C/Lua line. */
#ifndef SF_LUA_TENSOR_H
#define SF_LUA_TENSOR_H

#include <lauxlib.h>
#include <lua.h>

#include "core/tensor.h"

#define SF_TENSOR_MT "sfwb.Tensor"

/* the tensor at idx, or a Lua error naming the argument */
sf_tensor *sf_lua_check_tensor(lua_State *L, int idx);
sf_tensor *sf_lua_to_tensor(lua_State *L, int idx); /* NULL when not a tensor */
/* pushes a userdata owning the reference `t` (steals it). t == NULL raises sf_last_error(). */
void sf_lua_push_tensor(lua_State *L, sf_tensor *t);
/* raise sf_last_error() as a Lua error (never returns) */
int sf_lua_raise(lua_State *L);
/* registers metatable `name` whose __gc is `gc` (for boxes that own C resources); leaves the stack as it was */
void sf_lua_gc_metatable(lua_State *L, const char *name, lua_CFunction gc);
/* a shape from a table {2,3} or from the integer arguments starting at idx; returns ndim */
int sf_lua_check_shape(lua_State *L, int idx, int64_t *shape);
/* reads {dtype=, device=} from the table at idx (absent fields keep the given defaults) */
void sf_lua_opt_dtype_device(lua_State *L, int idx, sf_dtype *dt, sf_device *dev);
/* 1-based Lua dim (negative counts from the end) to a 0-based C dim; errors name the tensor's rank */
int sf_lua_check_dim(lua_State *L, int idx, int ndim);

/* Other bindings extend Tensor from their sf_lua_register_* (e.g. autograd: t:backward(), t.grad):
 * a method `t:name(...)`, a read-only field `t.name` (f(L) gets the tensor at 1 and returns 1 value),
 * and an assignable field `t.name = v` (f(L) gets the tensor at 1 and the value at 2). The Lua-side
 * method table is also reachable as sfwb.Tensor, so Lua modules may add methods too. */
void sf_lua_tensor_add_method(lua_State *L, const char *name, lua_CFunction f);
void sf_lua_tensor_add_getter(lua_State *L, const char *name, lua_CFunction f);
void sf_lua_tensor_add_setter(lua_State *L, const char *name, lua_CFunction f);

#endif
