'use strict';
// wisp's Node.js runtime: a client of the AWS Lambda Runtime API (2018-06-01).
//
// Run as `node bootstrap.js` inside every nodejs function instance. It loads
// the handler named by $_HANDLER once, then loops: fetch the next event from
// $AWS_LAMBDA_RUNTIME_API, call the handler, post its result or error.
// Behaviour and error shapes follow aws-lambda-nodejs-runtime-interface-client
// (the "RIC"). Built-in modules only.

const fs = require('fs');
const http = require('http');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const API = process.env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
const API_HOST = API.slice(0, API.lastIndexOf(':')).replace(/^\[|\]$/g, '');
const API_PORT = Number(API.slice(API.lastIndexOf(':') + 1));
// One kept-alive connection: the runtime does one request at a time.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

// ------------------------------------------------------------ Runtime API

function request(method, route, body, headers = {}) {
  return new Promise((resolve, reject) => {
    if (body !== undefined) {
      headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...headers };
    }
    const req = http.request(
      { host: API_HOST, port: API_PORT, method, path: `/2018-06-01/runtime/${route}`, headers, agent },
      (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

// A kept-alive connection the server has since closed fails the next request
// (ECONNRESET and the like): retry once, the agent opens a new connection.
async function call(method, route, body, headers) {
  try {
    return await request(method, route, body, headers);
  } catch (err) {
    return request(method, route, body, headers);
  }
}

// The reply needs no handling: a refusal (413 for a too-large response, 400
// for an invocation already over) is wisp's to report.
async function post(route, body, headers) {
  await flushOutput();
  await call('POST', route, body, headers);
}

function postError(route, err) {
  const body = toErrorResponse(err);
  // Header values must be printable ASCII or http.request throws.
  const type = String(body.errorType).replace(/[^\x20-\x7e]/g, '');
  return post(route, JSON.stringify(body), { 'Lambda-Runtime-Function-Error-Type': type });
}

// ------------------------------------------------------------ errors

const errorClasses = {};
for (const name of ['ImportModuleError', 'HandlerNotFound', 'MalformedHandlerName', 'UserCodeSyntaxError', 'UnhandledPromiseRejection']) {
  errorClasses[name] = class extends Error {};
  errorClasses[name].prototype.name = `Runtime.${name}`;
}
const { ImportModuleError, HandlerNotFound, MalformedHandlerName, UserCodeSyntaxError, UnhandledPromiseRejection } = errorClasses;

function isError(err) {
  return util.types.isNativeError(err) || err instanceof Error ||
    (err != null && typeof err.name === 'string' && typeof err.message === 'string' && typeof err.stack === 'string');
}

// The body posted for an error: {errorType, errorMessage, stackTrace}.
function toErrorResponse(err) {
  try {
    if (isError(err)) {
      return { errorType: err.name, errorMessage: err.message, stackTrace: String(err.stack || '').split('\n') };
    }
    return { errorType: typeof err, errorMessage: String(err), stackTrace: [] };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      stackTrace: [],
    };
  }
}

// How the RIC logs an error: a tab, then JSON with the error's own fields.
function formatError(err) {
  try {
    return '\t' + JSON.stringify(err, (_key, value) => {
      if (!(value instanceof Error)) return value;
      const out = { errorType: value.name, errorMessage: value.message, code: value.code, ...value };
      if (typeof value.stack === 'string') out.stack = value.stack.split('\n');
      return out;
    });
  } catch (_) {
    return '\t' + JSON.stringify(toErrorResponse(err));
  }
}

// ------------------------------------------------------------ console

// Lambda's text log format: `<ISO time>\t<request id>\t<LEVEL>\t<message>`.
// Before the first invocation the request id prints as "undefined", as on Lambda.
let currentRequestId;

function patchConsole() {
  const levels = { trace: 'TRACE', debug: 'DEBUG', info: 'INFO', log: 'INFO', warn: 'WARN', error: 'ERROR', fatal: 'FATAL' };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...args) => {
      process.stdout.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...args)}\n`);
    };
  }
}

// Resolves once everything written to stdout/stderr is in the pipe, so that an
// invocation's logs are there before its response. Writes to a pipe are
// attempted at once but queued in memory when the pipe is full; an empty
// write's callback runs after the queue ahead of it has drained.
function flushOutput() {
  const pending = [process.stdout, process.stderr].filter((s) => s.writableLength > 0);
  return Promise.all(pending.map((s) => new Promise((resolve) => s.write('', resolve))));
}

// ------------------------------------------------------------ handler

// Follows the RIC's UserFunction.load: "dir/file.a.b" loads LAMBDA_TASK_ROOT/dir/file
// (as is, then .js, .mjs, .cjs) and takes its export a.b.
async function loadHandler(appRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(`'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`);
  }
  const base = path.basename(fullHandler);
  const moduleRoot = fullHandler.slice(0, fullHandler.indexOf(base));
  const match = base.match(/^([^.]*)\.(.*)$/);
  if (!match) throw new MalformedHandlerName('Bad handler');
  const [, moduleName, handlerPath] = match;

  let app;
  try {
    app = await loadModule(appRoot, moduleRoot, moduleName);
  } catch (err) {
    if (err instanceof SyntaxError) throw new UserCodeSyntaxError(err);
    if (err && (err.code === 'MODULE_NOT_FOUND' || err.code === 'ERR_MODULE_NOT_FOUND')) throw new ImportModuleError(err);
    throw err;
  }
  const handler = handlerPath.split('.').reduce((obj, key) => obj && obj[key], app);
  if (!handler) throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  if (typeof handler !== 'function') throw new HandlerNotFound(`${fullHandler} is not a function`);
  return handler;
}

async function loadModule(appRoot, moduleRoot, moduleName) {
  const file = path.resolve(appRoot, moduleRoot, moduleName);
  const exists = (f) => fs.existsSync(f);
  const importFile = async (f) => import(pathToFileURL(f).href);
  if (exists(file)) return require(file);
  const jsIsModule = exists(file + '.js') && isTypeModule(path.dirname(file));
  if (exists(file + '.js')) return jsIsModule ? importFile(file + '.js') : require(file + '.js');
  if (exists(file + '.mjs')) return importFile(file + '.mjs');
  if (exists(file + '.cjs')) return require(file + '.cjs');
  // Last resort, like the RIC: a package, resolved from the task root.
  return require(require.resolve(moduleName, { paths: [appRoot, path.resolve(appRoot, moduleRoot)] }));
}

// Does the nearest package.json above `dir` say "type": "module"? (Node's own
// rule for .js files; a node_modules folder ends the search.)
function isTypeModule(dir) {
  for (;;) {
    if (dir.endsWith('/node_modules')) return false;
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
      } catch (err) {
        console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`, err);
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

// ------------------------------------------------------------ invocations

// Reports an uncaught exception or unhandled rejection: set per phase below.
let onFatal = async (_err) => {};
// Called when the event loop is empty: callback-style handlers (with
// context.callbackWaitsForEmptyEventLoop, the default) complete only then, as on Lambda.
let onEmptyLoop = null;
process.on('beforeExit', () => {
  const f = onEmptyLoop;
  onEmptyLoop = null;
  if (f) f();
});

function parseJsonHeader(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

async function nextInvocation(handler) {
  const res = await call('GET', 'invocation/next');
  if (res.status === 410) process.exit(0); // wisp is stopping this instance
  if (res.status !== 200) {
    process.stderr.write(`wisp runtime: GET next -> ${res.status} ${res.body.toString().slice(0, 200)}\n`);
    process.exit(1);
  }
  const headers = res.headers;
  const id = headers['lambda-runtime-aws-request-id'];
  currentRequestId = id;
  if (headers['lambda-runtime-trace-id']) process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
  else delete process.env._X_AMZN_TRACE_ID;

  let finished = false;
  // Posts the outcome once, then fetches the next event.
  const finish = (err, result, isError) => {
    if (finished) {
      if (!isError) console.error('Invocation has already been reported as done. Cannot call complete more than once per invocation.');
      return;
    }
    let body;
    if (!isError) {
      try {
        body = JSON.stringify(result === undefined ? null : result);
      } catch (_) {
        [err, isError] = [new Error('Unable to stringify response body'), true];
      }
    }
    finished = true;
    onEmptyLoop = null;
    let sent;
    if (isError) {
      console.error('Invoke Error', formatError(err));
      sent = postError(`invocation/${id}/error`, err);
    } else {
      sent = post(`invocation/${id}/response`, body);
    }
    sent.then(() => nextInvocation(handler)).catch(fatalRuntimeError);
  };
  onFatal = async (err) => {
    if (finished) return;
    finished = true;
    await postError(`invocation/${id}/error`, err);
  };

  let waitForEmptyLoop = true;
  const done = (err, result) => (err !== undefined && err !== null ? finish(err, undefined, true) : finish(null, result, false));
  const callback = (err, result) => {
    if (err) return finish(err, undefined, true);
    if (!waitForEmptyLoop) return finish(null, result, false);
    onEmptyLoop = () => finish(null, result, false);
  };
  // A handler that neither returns a promise nor calls back answers null once
  // the event loop is empty (the RIC's default exit listener).
  onEmptyLoop = () => finish(null, null, false);

  try {
    const deadline = Number(headers['lambda-runtime-deadline-ms']);
    const env = process.env;
    const context = {
      get callbackWaitsForEmptyEventLoop() { return waitForEmptyLoop; },
      set callbackWaitsForEmptyEventLoop(value) { waitForEmptyLoop = value; },
      succeed: (result) => done(null, result),
      fail: (err) => done(err === undefined || err === null ? 'handled' : err),
      done,
      functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
      functionName: env.AWS_LAMBDA_FUNCTION_NAME,
      memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
      clientContext: parseJsonHeader(headers['lambda-runtime-client-context'], 'ClientContext'),
      identity: parseJsonHeader(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
      invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
      awsRequestId: id,
      getRemainingTimeInMillis: () => deadline - Date.now(),
    };
    const event = res.body.length ? JSON.parse(res.body.toString('utf8')) : {};
    const returned = handler(event, context, callback);
    if (returned && typeof returned.then === 'function') {
      returned.then(context.succeed, context.fail);
    }
  } catch (err) {
    callback(err);
  }
}

// The Runtime API itself failed: nothing can be reported any more.
function fatalRuntimeError(err) {
  process.stderr.write(`wisp runtime: lost the runtime API: ${err && err.message}\n`);
  process.exit(1);
}

async function main() {
  patchConsole();
  // Like Lambda: an uncaught exception or unhandled rejection fails the
  // current invocation (or the init) and ends the process.
  process.on('uncaughtException', (err) => {
    console.error('Uncaught Exception', formatError(err));
    onFatal(err).finally(() => process.exit(1));
  });
  process.on('unhandledRejection', (reason, promise) => {
    const err = new UnhandledPromiseRejection(reason === undefined || reason === null ? reason : reason.toString());
    console.error('Unhandled Promise Rejection', formatError(err));
    onFatal(err).finally(() => process.exit(1));
  });

  onFatal = (err) => postError('init/error', err);
  const handler = await loadHandler(process.env.LAMBDA_TASK_ROOT || process.cwd(), process.env._HANDLER || '');
  onFatal = async (_err) => {};
  nextInvocation(handler).catch(fatalRuntimeError);
}

main().catch((err) => {
  console.error('Uncaught Exception', formatError(err));
  postError('init/error', err).finally(() => process.exit(1));
});
