'use strict';
// jest runs the Node-side tests: config/render units and end-to-end tests that start real
// nginx, nats-server and the reference Router. They share two cores, so run them one by one.
module.exports = {
  rootDir: __dirname,
  testEnvironment: 'node',
  testMatch: ['<rootDir>/spec/**/*.test.js'],
  testTimeout: 60000,
  maxWorkers: 1,
  verbose: true,
  // After each test: no unexpected [error] lines in any gateway's nginx error log.
  setupFilesAfterEnv: ['<rootDir>/spec/support/jest-setup.js'],
};
