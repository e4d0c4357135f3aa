-- sfwb/pipeline/init.lua — sfwb.pipeline: the inference pipelines (causal few-step AR, bidirectional).
local M = {}

M.causal = function(opts) return require("sfwb.pipeline.causal").new(opts) end
M.interactive = function(opts) return require("sfwb.pipeline.interactive").new(opts) end
M.bidirectional = function(opts) return require("sfwb.pipeline.bidirectional").new(opts) end
M.causal_diffusion = function(opts) return require("sfwb.pipeline.diffusion").causal(opts) end
M.bidirectional_diffusion = function(opts) return require("sfwb.pipeline.diffusion").bidirectional(opts) end
M.util = setmetatable({}, {__index = function(_, k) return require("sfwb.pipeline.util")[k] end})

return M
