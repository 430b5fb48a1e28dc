// zeroth — forward-only (zeroth-order) fine-tuning and curvature estimation.
export { ZerothError } from './errors.js';
export type { ZerothErrorCode } from './errors.js';
export type { DType, FloatDType, TypedArrayFor, TensorData } from './dtype.js';
export { devices, buildInfo, setNumThreads } from './device.js';
export type { DeviceName, DeviceInfo, BuildInfo } from './device.js';
export { Tensor, tensor, zeros, ones, full, arange, memoryStats } from './tensor.js';
export type { TensorOptions, CreateOptions, NestedNumbers } from './tensor.js';
export { loadTokenizer, Tokenizer } from './tokenizer.js';
export type { EncodeOptions, DecodeOptions, EncodeBatchOptions, EncodedBatch } from './tokenizer.js';
export * as ops from './ops.js';
export * as optim from './optim/index.js';
export { loadModel, modelFromWeights, Model } from './model.js';
export type { ModelConfig, ModelFamily, LoadModelOptions, ForwardOptions, GenerateOptions, Perturbation } from './model.js';
export type { TrainableSpec } from './model.js';
export { readSafetensors, writeSafetensors } from './safetensors.js';
export type { SafetensorsReader, SafetensorsTensorInfo, SafetensorsLoadOptions } from './safetensors.js';
