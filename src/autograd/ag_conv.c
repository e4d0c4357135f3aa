/* ag_conv.c — the recorder and backward of conv2d/conv3d (sf_conv2d/sf_conv3d): gradients for the input,
 * the weight and the bias from the CPU kernel in backend/cpu/conv_grad_cpu.c. */
#include "autograd/ag_internal.h"
#include "backend/conv_ops.h"
#include "core/error.h"

static int bw_conv(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  int nd = (int)n->ip[0], stride[3], pad[3];
  for (int i = 0; i < 3; i++) stride[i] = (int)n->ip[1 + i], pad[i] = (int)n->ip[4 + i];
  sf_tensor *x = n->saved[0], *w = n->saved[1];
  return sf_conv_backward_cpu(nd, x, w, go[0], stride, pad, sf_node_needs(n, 0) ? &gi[0] : NULL,
                              sf_node_needs(n, 1) ? &gi[1] : NULL, (n->n_in > 2 && sf_node_needs(n, 2)) ? &gi[2] : NULL);
}

sf_tensor *sf_ag_conv(sf_tensor *out, int nd, sf_tensor *x, sf_tensor *w, sf_tensor *b, const int *stride, const int *pad) {
  if (!out) return out;
  sf_tensor *in[3] = {x, w, b};
  sf_node *n = sf_node_begin(nd == 3 ? "conv3d" : "conv2d", bw_conv, in, b ? 3 : 2);
  if (!n) return out;
  n->ip[0] = nd;
  for (int i = 0; i < 3; i++) {
    n->ip[1 + i] = i < nd ? stride[i] : 1;
    n->ip[4 + i] = i < nd ? pad[i] : 0;
  }
  sf_node_save(n, 0, x);
  sf_node_save(n, 1, w);
  return sf_node_finish1(n, out);
}
