'use strict';
// Runs in every jest test file: the error-log rule of spec/support/gateway.js. A test fails when
// a gateway's nginx error log gained an [error]/[crit]/[alert]/[emerg] line it did not expect.
const { checkErrorLogs } = require('./gateway');

afterEach(() => checkErrorLogs());
