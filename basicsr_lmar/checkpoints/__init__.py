"""Checkpoints: conversion of the authors' released weights to this project's archs (one module per
method)."""
