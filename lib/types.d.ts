// Modules without type declarations of their own.
declare module 'sd-notify';
