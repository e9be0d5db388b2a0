// A gRPC client of `tpserve serve` for the end-to-end tests: unary and streaming greedy requests,
// health and Stats.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tpserve/v1/generation.grpc.pb.h"

namespace tpserve::testing {

namespace v1 = tpserve::v1;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

class Client {
 public:
  explicit Client(const std::string& address)
      : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        stub_(v1::Generation::NewStub(channel_)),
        health_(grpc::health::v1::Health::NewStub(channel_)) {}

  static v1::GenerateRequest greedy(const std::vector<int32_t>& prompt, int max_tokens) {
    v1::GenerateRequest request;
    for (int32_t id : prompt) request.mutable_token_ids()->add_ids(id);
    request.mutable_sampling()->set_temperature(0);
    request.mutable_sampling()->set_max_tokens(max_tokens);
    request.mutable_sampling()->set_ignore_eos(true);
    return request;
  }

  grpc::Status generate(const v1::GenerateRequest& request, v1::GenerateResponse* response,
                        std::chrono::seconds timeout = std::chrono::seconds(60)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    return stub_->Generate(&context, request, response);
  }

  // Streams a request; returns the concatenated token ids of choice 0 and the final status.
  std::pair<std::vector<int32_t>, grpc::Status> stream(const v1::GenerateRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    auto reader = stub_->GenerateStream(&context, request);
    std::vector<int32_t> ids;
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      for (const auto& choice : response.choices()) {
        if (choice.index() == 0) ids.insert(ids.end(), choice.token_ids().begin(), choice.token_ids().end());
      }
    }
    return {ids, reader->Finish()};
  }

  HealthStatus::ServingStatus health() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest request;
    HealthStatus response;
    if (!health_->Check(&context, request, &response).ok()) return HealthStatus::UNKNOWN;
    return response.status();
  }

  // Polls health() until it reports `wanted` or `limit` passes; the last status seen. For what a
  // signal changes: a fixed sleep is too short on a loaded CI machine and wasted elsewhere.
  HealthStatus::ServingStatus await_health(HealthStatus::ServingStatus wanted,
                                           std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    HealthStatus::ServingStatus seen = health();
    while (seen != wanted && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      seen = health();
    }
    return seen;
  }

  // Polls Stats until `done(stats)` holds or `limit` passes; whether it held.
  template <typename Predicate>
  bool await_stats(Predicate done, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done(stats())) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  v1::StatsResponse stats() {
    grpc::ClientContext context;
    v1::StatsResponse response;
    EXPECT_TRUE(stub_->Stats(&context, v1::StatsRequest(), &response).ok());
    return response;
  }

  v1::Generation::Stub& stub() { return *stub_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace tpserve::testing
