/* lua_tensor_impl.h — internals shared by the lua_tensor*.c files (other bindings use lua_tensor.h). */
#ifndef SF_LUA_TENSOR_IMPL_H
#define SF_LUA_TENSOR_IMPL_H

#include "lua/lua_tensor.h"

/* the userdata: one owned reference, NULL after __gc / __close / t:free() */
typedef struct {
  sf_tensor *t;
} sf_lua_tensor_ud;

/* luaL_error with full printf formats (%lld, %g); the message gets the caller's position */
int sf_lua_errorf(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "[2, 3]" of a tensor into buf (always NUL-terminated) */
const char *sf_lua_shape_str(const sf_tensor *t, char *buf, size_t n);
/* pushes a CPU view of t (t itself when already on CPU) as a Tensor userdata so that it is collected
 * even if a later Lua call raises; returns the borrowed pointer. */
sf_tensor *sf_lua_push_cpu_copy(lua_State *L, sf_tensor *t);
/* element at element offset `off` (relative to the storage start) of a CPU tensor */
double sf_lua_elem_double(const sf_tensor *t, int64_t off);
int64_t sf_lua_elem_int(const sf_tensor *t, int64_t off);
void sf_lua_push_elem(lua_State *L, const sf_tensor *t, int64_t off);
/* 1-based index i (negative from the end) into a dim of `size`: 0-based, or a Lua error naming both */
int64_t sf_lua_check_index(lua_State *L, int64_t i, int64_t size, int dim1, const char *what);

/* method tables filled by the files of the binding */
void sf_lua_tensor_register_view_methods(lua_State *L);  /* lua_tensor_view.c */
void sf_lua_tensor_register_math_methods(lua_State *L);  /* lua_tensor_math.c */
void sf_lua_tensor_register_print_methods(lua_State *L); /* lua_tensor_print.c */
void sf_lua_tensor_register_math_functions(lua_State *L); /* sfwb.matmul, sfwb.where, ... (sfwb table on top) */
void sf_lua_tensor_register_create_functions(lua_State *L); /* sfwb.tensor, sfwb.zeros, ... (sfwb table on top) */
int sf_lua_tensor_tostring(lua_State *L);

/* shared argument checks */
void sf_lua_check_broadcast(lua_State *L, const sf_tensor *a, const sf_tensor *b, const char *op);
double sf_lua_check_scalar(lua_State *L, int idx, const char *op);

#endif
