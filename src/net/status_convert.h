// swarm::Status <-> grpc::Status, and names of gRPC codes for messages.
// swarm::Status has fewer codes than gRPC; the mapping keeps the meaning a
// caller acts on (retry elsewhere, fix the request, give up).
#pragma once

#include <grpcpp/support/status.h>

#include <string>

#include "engine/status.h"

namespace swarm::net {

inline grpc::StatusCode to_grpc_code(Status::Code c) {
  switch (c) {
    case Status::Code::kOk:
      return grpc::StatusCode::OK;
    case Status::Code::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case Status::Code::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case Status::Code::kCorruption:
      return grpc::StatusCode::DATA_LOSS;
    case Status::Code::kUnsupported:
      return grpc::StatusCode::UNIMPLEMENTED;
    case Status::Code::kIOError:
      return grpc::StatusCode::UNAVAILABLE;
    case Status::Code::kResourceExhausted:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case Status::Code::kInternal:
      return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::UNKNOWN;
}

inline grpc::Status to_grpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(to_grpc_code(s.code()), s.message());
}

inline const char* grpc_code_name(int code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
}

// A gRPC code (from a grpc::Status or an Error message) with its message as a
// swarm::Status. Codes swarm::Status has no twin for keep their name in the text.
inline Status from_grpc(int code, const std::string& message) {
  switch (code) {
    case grpc::StatusCode::OK:
      return Status::Ok();
    case grpc::StatusCode::INVALID_ARGUMENT:
      return Status::InvalidArgument(message);
    case grpc::StatusCode::NOT_FOUND:
      return Status::NotFound(message);
    case grpc::StatusCode::DATA_LOSS:
      return Status::Corruption(message);
    case grpc::StatusCode::UNIMPLEMENTED:
      return Status::Unsupported(message);
    case grpc::StatusCode::UNAVAILABLE:
      return Status::IOError(message);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Status::ResourceExhausted(message);
    case grpc::StatusCode::INTERNAL:
      return Status::Internal(message);
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::ALREADY_EXISTS:
      return Status::InvalidArgument(std::string(grpc_code_name(code)) + ": " + message);
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
      return Status::IOError(std::string(grpc_code_name(code)) + ": " + message);
    default:
      return Status::Internal(std::string(grpc_code_name(code)) + ": " + message);
  }
}

inline Status from_grpc(const grpc::Status& s) {
  return from_grpc(s.error_code(), s.error_message());
}

}  // namespace swarm::net
