FROM builder AS builder
