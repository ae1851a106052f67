FROM alpine as builder
