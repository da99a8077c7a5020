"""TF Serving's `PredictRequest`, built from its .proto schema without `tensorflow-serving-api`.

That package depends on the full `tensorflow` package, which must not be installed beside the
`tensorflow-cpu` this project depends on; its messages are plain protobuf, so the same schema (field
names and numbers of tensorflow_serving/apis/model.proto and predict.proto, TF Serving 2.x) is built here
in a private descriptor pool, on TensorFlow's own `TensorProto`. Serialized, a request built here has the
wire bytes of `tensorflow_serving.apis.predict_pb2.PredictRequest` with the same fields.
"""
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import wrappers_pb2

F = descriptor_pb2.FieldDescriptorProto


def _add_with_dependencies(pool, file_descriptor, added):
  for dependency in file_descriptor.dependencies:
    _add_with_dependencies(pool, dependency, added)
  if file_descriptor.name not in added:
    proto = descriptor_pb2.FileDescriptorProto()
    file_descriptor.CopyToProto(proto)
    pool.Add(proto)
    added.add(file_descriptor.name)


def _field(message, name, number, kind, *, type_name=None, label=F.LABEL_OPTIONAL):
  field = message.field.add(name=name, number=number, type=kind, label=label)
  if type_name:
    field.type_name = type_name


def predict_request_class():
  """The `tensorflow.serving.PredictRequest` message class:
    ModelSpec { string name = 1; google.protobuf.Int64Value version = 2; string signature_name = 3;
                string version_label = 4; }
    PredictRequest { ModelSpec model_spec = 1; map<string, TensorProto> inputs = 2;
                     repeated string output_filter = 3; }"""
  from tensorflow.core.framework import tensor_pb2  # pylint: disable=g-import-not-at-top
  pool, added = descriptor_pool.DescriptorPool(), set()
  _add_with_dependencies(pool, tensor_pb2.DESCRIPTOR, added)
  _add_with_dependencies(pool, wrappers_pb2.DESCRIPTOR, added)

  model = descriptor_pb2.FileDescriptorProto(name="tensorflow_serving/apis/model.proto",
                                             package="tensorflow.serving", syntax="proto3",
                                             dependency=["google/protobuf/wrappers.proto"])
  spec = model.message_type.add(name="ModelSpec")
  _field(spec, "name", 1, F.TYPE_STRING)
  _field(spec, "version", 2, F.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value")
  _field(spec, "signature_name", 3, F.TYPE_STRING)
  _field(spec, "version_label", 4, F.TYPE_STRING)
  pool.Add(model)

  predict = descriptor_pb2.FileDescriptorProto(
      name="tensorflow_serving/apis/predict.proto", package="tensorflow.serving", syntax="proto3",
      dependency=["tensorflow/core/framework/tensor.proto", "tensorflow_serving/apis/model.proto"])
  request = predict.message_type.add(name="PredictRequest")
  entry = request.nested_type.add(name="InputsEntry")
  entry.options.map_entry = True
  _field(entry, "key", 1, F.TYPE_STRING)
  _field(entry, "value", 2, F.TYPE_MESSAGE, type_name=".tensorflow.TensorProto")
  _field(request, "model_spec", 1, F.TYPE_MESSAGE, type_name=".tensorflow.serving.ModelSpec")
  _field(request, "inputs", 2, F.TYPE_MESSAGE, type_name=".tensorflow.serving.PredictRequest.InputsEntry",
         label=F.LABEL_REPEATED)
  _field(request, "output_filter", 3, F.TYPE_STRING, label=F.LABEL_REPEATED)
  pool.Add(predict)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.PredictRequest"))
