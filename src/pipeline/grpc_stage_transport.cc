#include "pipeline/grpc_stage_transport.h"

#include <thread>
#include <utility>

#include "net/channel_cache.h"
#include "net/status_convert.h"
#include "node/delayed_writer.h"
#include "swarm/v1/stage.grpc.pb.h"

namespace swarm {
namespace {

net::ChannelCache& stage_channels() {
  static net::ChannelCache cache;
  return cache;
}

class GrpcStageLink final : public StageLink {
 public:
  GrpcStageLink(const ChainStage& stage, size_t index, StageTransport::EventSink sink,
                std::chrono::milliseconds link_delay)
      : index_(index), sink_(std::move(sink)) {
    stub_ = v1::Stage::NewStub(stage_channel(stage.address, stage.public_key));
    stream_ = stub_->Session(&ctx_);
    reader_ = std::thread([this] { read_loop(); });
    if (link_delay.count() > 0)
      delayed_ = std::make_unique<node::DelayedWriter<v1::StageRequest>>(
          link_delay, [this](const v1::StageRequest& r) { return stream_->Write(r); },
          [this](const v1::StageRequest&) {
            sink_({index_, true, Status::Unavailable("write failed"), {}});
          });
  }
  ~GrpcStageLink() override {
    cancel();
    finish();
  }

  bool write(const v1::StageRequest& req) override {
    // Everything crosses the emulated link (an open too: opening a session
    // costs a round trip on a real one), but a close leaves at once, after
    // what is queued.
    if (delayed_ && !req.has_close()) {
      delayed_->send(req);
      return true;
    }
    if (req.has_close()) delayed_.reset();
    return stream_->Write(req);
  }
  void writes_done() override {
    delayed_.reset();  // what it holds goes out first
    stream_->WritesDone();
  }
  void cancel() override {
    ctx_.TryCancel();
    delayed_.reset();
  }
  void finish() override {
    if (finished_) return;
    finished_ = true;
    if (reader_.joinable()) reader_.join();
    stream_->Finish();
  }

 private:
  void read_loop() {
    v1::StageResponse r;
    while (stream_->Read(&r)) sink_({index_, false, Status::Ok(), std::move(r)});
    sink_({index_, true, Status::Unavailable("stream closed"), {}});
  }

  const size_t index_;
  StageTransport::EventSink sink_;
  grpc::ClientContext ctx_;
  std::unique_ptr<v1::Stage::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::StageRequest, v1::StageResponse>> stream_;
  std::unique_ptr<node::DelayedWriter<v1::StageRequest>> delayed_;
  std::thread reader_;
  bool finished_ = false;
};

}  // namespace

std::shared_ptr<grpc::Channel> stage_channel(const std::string& address, const std::string& pin) {
  return stage_channels().get(address, pin);
}

std::shared_ptr<grpc::Channel> renew_stage_channel(const std::string& address,
                                                   const std::string& pin) {
  return stage_channels().renew(address, pin);
}

std::unique_ptr<StageLink> GrpcStageTransport::open(const ChainStage& stage, size_t index,
                                                    EventSink sink) {
  return std::make_unique<GrpcStageLink>(stage, index, std::move(sink), link_delay_);
}

int GrpcStageTransport::first_silent_stage(const std::vector<ChainStage>& stages,
                                           std::chrono::milliseconds timeout) {
  // One completion queue and every call at once: the probe takes one timeout,
  // not one per stage.
  struct Call {
    std::unique_ptr<v1::Stage::Stub> stub;
    grpc::ClientContext ctx;
    v1::InfoResponse info;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::InfoResponse>> rpc;
  };
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Call>> calls;
  for (size_t i = 0; i < stages.size(); ++i) {
    auto& c = calls.emplace_back(std::make_unique<Call>());
    c->stub = v1::Stage::NewStub(stage_channel(stages[i].address, stages[i].public_key));
    c->ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    c->rpc = c->stub->AsyncInfo(&c->ctx, v1::InfoRequest(), &cq);
    c->rpc->Finish(&c->info, &c->status, reinterpret_cast<void*>(i));
  }
  for (size_t done = 0; done < calls.size(); ++done) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq.Next(&tag, &ok)) break;
  }
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
  for (size_t i = 0; i < calls.size(); ++i)
    if (!calls[i]->status.ok()) return static_cast<int>(i);
  return -1;
}

std::vector<PeerProbe> GrpcStageTransport::survey(const std::vector<net::PeerAddress>& peers,
                                                  const std::vector<int>& first_try,
                                                  std::chrono::milliseconds timeout) {
  return probe_peers(peers, first_try, timeout);
}

}  // namespace swarm
